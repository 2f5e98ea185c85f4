"""Evaluate one reconstruction file against the ground truth of its test split."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from ptycho.config import IntervalConfig, dose_label
from ptycho.data.dataset import Dataset
from ptycho.data.io import atomic_path, write_json
from ptycho.errors import DatasetError
from ptycho.evaluation.align import MAX_SHIFT_PX, align_to_truth
from ptycho.evaluation.frc import NYQUIST_PERIOD_PX
from ptycho.evaluation.intervals import bootstrap_stream, metric_intervals
from ptycho.evaluation.metrics import PSNR_CAP_DB, metrics_and_curves
from ptycho.evaluation.region import (
    illumination_map,
    probe_peak_intensity,
    region_from_illumination,
)
from ptycho.physics.illumination import LIT_EROSION_PX, LIT_THRESHOLD, fluence_map, mean_fluence
from ptycho.physics.probe import energy_diameter
from ptycho.reconstruct.io import read_reconstruction
from ptycho.rng import replicate_labels

REGION_THRESHOLD = LIT_THRESHOLD
REGION_EROSION_PX = LIT_EROSION_PX
UPSAMPLE = 20


def score(obj: np.ndarray, truth: np.ndarray, mask: np.ndarray, illum: np.ndarray, peak: float):
    """(alignment, metrics, FRC curves) of one object: the one alignment and metric path every
    arm, snapshot and reference goes through."""
    al = align_to_truth(obj, truth, mask, upsample=UPSAMPLE, max_shift=MAX_SHIFT_PX,
                        illumination=illum / peak)
    metrics, curves = metrics_and_curves(al.aligned, truth, mask)
    return al, metrics, curves


def flat_reference(truth: np.ndarray, mask: np.ndarray, illum: np.ndarray, peak: float) -> dict:
    """Metrics of a flat object (1 wherever the test scan illuminates), aligned and scored exactly
    like an arm: the floor a reconstruction has to beat to show it learned anything. SSIM on a
    nearly uniform region rewards flatness, so this floor is far from zero."""
    return score((illum > 0).astype(np.complex128), truth, mask, illum, peak)[1]


def evaluate_reconstruction(recon_path, test_path, metrics_path, aligned_path,
                            intervals: IntervalConfig | None = None, seed: int = 13) -> dict:
    """Region, alignment and metrics of one arm's reconstruction; writes two files atomically.

    ``recon_path``: reconstruction HDF5 (:mod:`ptycho.reconstruct.io`); ``test_path``: the test
    split dataset it reconstructed (positions, probe and ground-truth object are read from it).
    The region comes from the test positions and probe (:mod:`ptycho.evaluation.region`), the
    alignment is :func:`~ptycho.evaluation.align.align_to_truth` (registration weighted by the
    test scan's illumination), the metrics :func:`~ptycho.evaluation.metrics.compute_metrics`.

    ``aligned_path`` (HDF5, no timestamps): ``/aligned`` complex64 (H, W) aligned reconstruction,
    ``/truth`` complex64 (H, W), ``/mask`` uint8 (H, W) evaluation region (1 inside).
    ``metrics_path`` (JSON), also returned::

        {"arm": str, "gridsize": int, "dose": float (photons/exposure), "dose_label": str,
         "overlap_view": str, "region_pixels": int,
         "alignment": {"shift": [dy, dx] px, "shift_capped": bool, "scale_abs": float,
                       "scale_phase": rad, "ramp": [offset rad, gy rad/px, gx rad/px]},
         "metrics": {"amplitude": {mae, mse, psnr, psnr_data_range, ssim, ms_ssim,
                                   frc50_px, frc17_px},
                     "phase": {same keys}, "complex": {"nce": float}},
         "frc": {"amplitude": {"freq": [cycles/px], "frc": [...]}, "phase": {...}},
         "recon_wall_time_s": float, "recon_info": dict, "recon_path": str, "test_path": str,
         "reference": {"flat_object": {"amplitude": {...}, "phase": {...}, "complex": {...}}},
         "snapshots": [{"epoch": int, "wall_time_s": float, "shift": [dy, dx],
                        "metrics": {same as "metrics"}}, ...]   (solver arms only: every
                        convergence snapshot scored like the final object; the last one is the
                        final object, so its metrics equal "metrics")
         "evaluation": {"region_threshold", "region_erosion_px", "registration_upsample",
                        "max_shift_px", "psnr_data_range" (text), "psnr_cap_db"},
         "replicate": int (the test split's replicate),
         "fluence": {"photons_per_px": mean incident photons per pixel over the region,
                     "photons_per_m2": same per m^2 (null without a pixel size),
                     "exposures_per_px": fluence / dose, "pixel_size_m": float | null},
         "intervals": {"amplitude": {metric: [low, high], ...}, "phase": {...},
                       "complex": {"nce": [low, high]}},
         "bootstrap": {"method", "block_px", "n_blocks", "resamples", "confidence", "seed",
                       "stream", "data_range", "interval_methods", "blocks": per-block sums},
         "frc_limits": {"nyquist_px": 2.0, "largest_px": the largest period the FRC measures}}

    ``intervals`` (confidence, resamples, block size; default ``IntervalConfig()``) and ``seed``
    (the study's ``seeds.bootstrap``) set the block bootstrap of
    :mod:`ptycho.evaluation.intervals`; its stream names the cell and replicate but not the arm.

    Raises ``DatasetError`` when the files do not belong together (shape, dose, split) and
    ``PtychoError`` when the region is empty or a metric cannot be computed.
    """
    rec = read_reconstruction(recon_path)
    intervals = intervals or IntervalConfig()
    with Dataset(test_path) as ds:
        positions, probe, truth = ds.positions, ds.probe, ds.object
        ds_dose, split, replicate = ds.dose, ds.split, ds.replicate
        pixel_size = ds.attrs.get("pixel_size_m")
        view = str(ds.config.get("overlap_view", rec.overlap_view))
    if split != "test":
        raise DatasetError(f"{test_path}: split is '{split}', expected the 'test' split")
    if rec.object.shape != truth.shape:
        raise DatasetError(f"{recon_path}: reconstruction is {rec.object.shape}, the ground truth "
                           f"of {test_path} is {truth.shape}")
    if not math.isclose(rec.dose, ds_dose, rel_tol=1e-6):
        raise DatasetError(f"{recon_path}: dose {rec.dose} differs from the test split's dose "
                           f"{ds_dose} ({test_path})")
    peak = probe_peak_intensity(probe)
    illum = illumination_map(truth.shape, positions, probe)
    mask = region_from_illumination(illum, peak, REGION_THRESHOLD, REGION_EROSION_PX)
    al, metrics, curves = score(rec.object, truth, mask, illum, peak)
    stream = bootstrap_stream(dose_label(ds_dose), view, replicate_labels(replicate))
    ci, record = metric_intervals(al.aligned, truth, mask, metrics, curves,
                                  energy_diameter(probe, 0.9), seed, stream,
                                  intervals.confidence, intervals.resamples, intervals.block_px)
    fluence = mean_fluence(fluence_map(truth.shape, positions, probe, ds_dose), mask)
    out = {
        "arm": rec.arm,
        "gridsize": int(rec.gridsize),
        "dose": float(rec.dose),
        "dose_label": dose_label(rec.dose),
        "overlap_view": rec.overlap_view,
        "region_pixels": int(mask.sum()),
        "alignment": {
            "shift": [al.shift[0], al.shift[1]],
            "shift_capped": al.shift_capped,
            "scale_abs": float(abs(al.scale)),
            "scale_phase": float(np.angle(al.scale)),
            "ramp": list(al.ramp),
        },
        "metrics": metrics,
        "frc": curves,
        "recon_wall_time_s": float(rec.wall_time_s),
        "recon_info": rec.info,
        "recon_path": str(recon_path),
        "test_path": str(test_path),
        "reference": {"flat_object": flat_reference(truth, mask, illum, peak)},
        "evaluation": {
            "region_threshold": REGION_THRESHOLD,
            "region_erosion_px": REGION_EROSION_PX,
            "registration_upsample": UPSAMPLE,
            "max_shift_px": MAX_SHIFT_PX,
            "psnr_data_range": "ground-truth max - min over the region",
            "psnr_cap_db": PSNR_CAP_DB,
        },
        "replicate": int(replicate),
        "fluence": {
            "photons_per_px": fluence,
            "photons_per_m2": None if pixel_size is None else fluence / float(pixel_size) ** 2,
            "exposures_per_px": fluence / float(ds_dose),
            "pixel_size_m": pixel_size,
        },
        "intervals": ci,
        "bootstrap": record,
        "frc_limits": {"nyquist_px": NYQUIST_PERIOD_PX, "largest_px": float(1.0 / curves["amplitude"]["freq"][0])},
    }
    if rec.snapshots is not None:
        out["snapshots"] = _score_snapshots(rec.snapshots, truth, mask, illum, peak, recon_path)
    with atomic_path(aligned_path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("aligned", data=al.aligned.astype(np.complex64), track_times=False)
        f.create_dataset("truth", data=np.asarray(truth, np.complex64), track_times=False)
        f.create_dataset("mask", data=mask.astype(np.uint8), track_times=False)
        f.attrs["arm"] = rec.arm
        f.attrs["source"] = str(Path(recon_path))
    write_json(metrics_path, out)
    return out


def _score_snapshots(snaps, truth, mask, illum, peak, recon_path) -> list[dict]:
    if snaps.objects.shape[1:] != truth.shape:
        raise DatasetError(f"{recon_path}: snapshots are {snaps.objects.shape[1:]}, the ground "
                           f"truth is {truth.shape}")
    out = []
    for epoch, t, obj in zip(snaps.epochs, snaps.wall_time_s, snaps.objects):
        al, metrics, _ = score(obj, truth, mask, illum, peak)
        out.append({"epoch": int(epoch), "wall_time_s": float(t),
                    "shift": [al.shift[0], al.shift[1]], "metrics": metrics})
    return out
