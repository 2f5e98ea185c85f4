"""Evaluate one reconstruction file: against the ground truth of its test split, or, for a test
split without one, with ground-truth-free measures only (:mod:`ptycho.evaluation.residual`)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from ptycho.config import IntervalConfig, dose_label
from ptycho.data.dataset import Dataset
from ptycho.data.io import atomic_path
from ptycho.errors import DatasetError
from ptycho.evaluation.align import MAX_SHIFT_PX, align_to_truth
from ptycho.evaluation.frc import NYQUIST_PERIOD_PX
from ptycho.evaluation.intervals import bootstrap_stream, metric_intervals
from ptycho.evaluation.metrics import PSNR_CAP_DB, downsampled_ssim, metrics_and_curves
from ptycho.evaluation.record import MetricsRecord, write_metrics
from ptycho.evaluation.region import (
    illumination_map,
    probe_peak_intensity,
    region_from_illumination,
)
from ptycho.evaluation.residual import HALF_SUFFIX, data_residual, half_frc
from ptycho.physics.illumination import LIT_EROSION_PX, LIT_THRESHOLD, fluence_map, mean_fluence
from ptycho.physics.probe import energy_diameter
from ptycho.reconstruct.io import read_reconstruction
from ptycho.rng import replicate_labels

REGION_THRESHOLD = LIT_THRESHOLD
REGION_EROSION_PX = LIT_EROSION_PX
UPSAMPLE = 20
GROUND_TRUTH_FREE = ("data.poisson_deviance", f"amplitude.frc50_px{HALF_SUFFIX}",
                     f"amplitude.frc17_px{HALF_SUFFIX}", f"phase.frc50_px{HALF_SUFFIX}",
                     f"phase.frc17_px{HALF_SUFFIX}")
"""Metrics (quantity.metric) that need no ground truth: the data residual and the FRC between
the reconstructions of two interleaved halves of the test scan."""


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


def ssim_at_scale(recon_path, test_path, factor: float) -> dict:
    """Amplitude and phase SSIM of a reconstruction and of the flat object, aligned exactly as
    :func:`evaluate_reconstruction` aligns them, then scored with the truth and the region
    downsampled ``factor`` times (``metrics.downsampled_ssim``): ``{"reconstruction":
    {"amplitude": ..., "phase": ...}, "flat_object": {...}, "factor": factor}``.

    For comparing pattern sizes: a study whose probe spans a fixed fraction of N samples the same
    physical object with N / 32 times the pixels of an N = 32 study, and the SSIM window of 11
    pixels then covers (32 / N)^2 of the area; a factor of N / 32 scores both on one scale."""
    rec, (_, _, truth), illum, peak, mask = _open_pair(recon_path, test_path)
    if truth is None:
        raise DatasetError(f"{test_path}: no ground truth, so there is no SSIM to rescale")
    flat = (illum > 0).astype(np.complex128)
    out = {"factor": float(factor)}
    for name, obj in (("reconstruction", rec.object), ("flat_object", flat)):
        aligned = score(obj, truth, mask, illum, peak)[0].aligned
        out[name] = {comp: downsampled_ssim(f(aligned), f(truth), mask, factor)
                     for comp, f in (("amplitude", np.abs), ("phase", np.angle))}
    return out


def evaluate_reconstruction(recon_path, test_path, metrics_path, aligned_path,
                            intervals: IntervalConfig | None = None, seed: int = 13,
                            halves=None) -> MetricsRecord:
    """Region, alignment and metrics of one arm's reconstruction; writes two files atomically.

    A test split without ground truth is evaluated by :func:`evaluate_without_truth` (``halves``,
    the arm's reconstructions of the two interleaved half scans, are then required); with ground
    truth, ``halves`` (optional) add the half-scan FRC. Every evaluation also reports the data
    residual (``metrics["data"]["poisson_deviance"]``, details in ``data_residual``, the flat
    object's and the ground truth's in ``reference``).

    ``recon_path``: reconstruction HDF5 (:mod:`ptycho.reconstruct.io`); ``test_path``: the test
    split dataset it reconstructed (positions, probe and ground-truth object are read from it).
    The region comes from the test positions and probe (:mod:`ptycho.evaluation.region`), the
    alignment is :func:`~ptycho.evaluation.align.align_to_truth` (registration weighted by the
    test scan's illumination), the metrics :func:`~ptycho.evaluation.metrics.compute_metrics`.

    ``aligned_path`` (HDF5, no timestamps): ``/aligned`` complex64 (H, W) aligned reconstruction,
    ``/truth`` complex64 (H, W), ``/mask`` uint8 (H, W) evaluation region (1 inside).
    ``metrics_path`` (JSON), a :class:`~ptycho.evaluation.record.MetricsRecord`, also returned::

        {"arm": str, "gridsize": int, "dose": float (photons/exposure), "dose_label": str,
         "overlap_view": str, "region_pixels": int,
         "alignment": {"shift": [dy, dx] px, "shift_capped": bool, "scale_abs": float,
                       "scale_phase": rad, "ramp": [offset rad, gy rad/px, gx rad/px]},
         "metrics": {"amplitude": {mae, mse, psnr, psnr_data_range, ssim, ms_ssim,
                                   frc50_px, frc17_px},
                     "phase": {same keys}, "complex": {"nce": float},
                     "data": {"poisson_deviance": float (mean per pattern)}},
         "frc": {"amplitude": {"freq": [cycles/px], "frc": [...]}, "phase": {...}},
         "recon_wall_time_s": float, "recon_info": dict, "recon_path": str, "test_path": str,
         "reference": {"flat_object": {"amplitude": {...}, "phase": {...}, "complex": {...},
                                       "data": {"poisson_deviance"}},
                       "ground_truth": {"data": {"poisson_deviance"}}},
         "snapshots": [{"epoch": int, "wall_time_s": float, "shift": [dy, dx],
                        "metrics": {same as "metrics"}}, ...]   (solver arms only: every
                        convergence snapshot scored like the final object; the last one is the
                        final object, so its metrics equal "metrics")
         "evaluation": {"region_threshold", "region_erosion_px", "registration_upsample",
                        "max_shift_px", "psnr_data_range" (text), "psnr_cap_db"},
         "ground_truth": true, "data_residual": {see residual.data_residual},
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

    With ``halves``: ``metrics.amplitude`` / ``metrics.phase`` also hold ``frc50_px_halves`` and
    ``frc17_px_halves``, with ``frc_halves`` curves and a ``halves`` block.

    Raises ``DatasetError`` when the files do not belong together (shape, dose, split) and
    ``PtychoError`` when the region is empty or a metric cannot be computed.
    """
    with Dataset(test_path, require_object=False) as ds:
        has_truth = ds.has_object
    if not has_truth:
        return evaluate_without_truth(recon_path, test_path, metrics_path, aligned_path, halves)
    intervals = intervals or IntervalConfig()
    rec, (positions, probe, truth), illum, peak, mask = _open_pair(recon_path, test_path)
    with Dataset(test_path) as ds:
        ds_dose, replicate = ds.dose, ds.replicate
        pixel_size = ds.attrs.get("pixel_size_m")
        view = str(ds.config.get("overlap_view", rec.overlap_view))
    al, metrics, curves = score(rec.object, truth, mask, illum, peak)
    stream = bootstrap_stream(dose_label(ds_dose), view, replicate_labels(replicate))
    ci, record = metric_intervals(al.aligned, truth, mask, metrics, curves,
                                  energy_diameter(probe, 0.9), seed, stream,
                                  intervals.confidence, intervals.resamples, intervals.block_px)
    fluence = _fluence(positions, probe, ds_dose, mask, pixel_size)
    residual = data_residual(rec.object, test_path, probe=rec.probe, positions=rec.positions)
    metrics["data"] = {"poisson_deviance": residual["poisson_deviance"]}
    out = MetricsRecord(
        arm=rec.arm,
        gridsize=int(rec.gridsize),
        dose=float(rec.dose),
        dose_label=dose_label(rec.dose),
        overlap_view=rec.overlap_view,
        region_pixels=int(mask.sum()),
        alignment={
            "shift": [al.shift[0], al.shift[1]],
            "shift_capped": al.shift_capped,
            "scale_abs": float(abs(al.scale)),
            "scale_phase": float(np.angle(al.scale)),
            "ramp": list(al.ramp),
        },
        metrics=metrics,
        frc=curves,
        recon_wall_time_s=float(rec.wall_time_s),
        recon_info=rec.info,
        recon_path=str(recon_path),
        test_path=str(test_path),
        reference={"flat_object": flat_reference(truth, mask, illum, peak)},
        evaluation={
            "region_threshold": REGION_THRESHOLD,
            "region_erosion_px": REGION_EROSION_PX,
            "registration_upsample": UPSAMPLE,
            "max_shift_px": MAX_SHIFT_PX,
            "psnr_data_range": "ground-truth max - min over the region",
            "psnr_cap_db": PSNR_CAP_DB,
        },
        ground_truth=True,
        data_residual=residual,
        replicate=int(replicate),
        fluence=fluence,
        intervals=ci,
        bootstrap=record,
        frc_limits={"nyquist_px": NYQUIST_PERIOD_PX,
                    "largest_px": float(1.0 / curves["amplitude"]["freq"][0])},
    )
    ref = out.reference
    ref["flat_object"]["data"] = {"poisson_deviance": _flat_residual(illum, test_path)}
    ref["ground_truth"] = {"data": {"poisson_deviance":
                                    data_residual(truth, test_path)["poisson_deviance"]}}
    errors = model_errors(rec, test_path)
    if errors is not None:
        out.extra["model_errors"] = errors
    if rec.snapshots is not None:
        out.snapshots = _score_snapshots(rec.snapshots, truth, mask, illum, peak, recon_path,
                                         test_path, probe=rec.probe, positions=rec.positions)
    if halves:
        _add_halves(out, halves, test_path, rec.object.shape)
    _write(out, aligned_path, metrics_path, al.aligned, mask, rec.arm, recon_path, truth)
    return out


def model_errors(rec, test_path) -> dict | None:
    """What an arm refined and how far its final probe and positions are from the truth, for a
    cell with model errors or an arm that refined something (None otherwise):
    ``{"error_level", "error_kind", "error_value", "nominal_probe_error",
    "nominal_position_rms_px", "refined": [...], "probe_error", "position_rms_px"}`` (relative
    probe error and position RMS error of what the arm ended with; the nominal ones when it
    refined nothing; null without a truth to compare with). Position RMS errors are measured after
    removing the mean offset from the truth (``position_rms_offset_free``; the offset itself is
    ``position_mean_offset_px``, (y, x))."""
    from ptycho.physics.errors import position_rms_error, relative_probe_error

    with Dataset(test_path, require_object=False) as ds:
        errs = ds.errors
        if errs is None and rec.probe is None and rec.positions is None:
            return None
        nominal_probe, nominal_pos = ds.probe_modes, ds.positions
        true_probe, true_pos = ds.true_probe, ds.true_positions
        simulated = ds.has_object
    refined = [k for k, v in (("probe", rec.probe), ("positions", rec.positions)) if v is not None]
    probe = nominal_probe if rec.probe is None else rec.probe
    pos = nominal_pos if rec.positions is None else rec.positions
    out = {
        "error_level": None if errs is None else errs["label"],
        "error_kind": None if errs is None else errs["kind"],
        "error_value": 0.0 if errs is None else float(errs["value"]),
        "refined": refined,
        # how far the arm moved from what it was told
        "probe_change": relative_probe_error(probe, nominal_probe),
        "position_change_rms_px": position_rms_error(pos, nominal_pos),
        "nominal_probe_error": None, "nominal_position_rms_px": None,
        "probe_error": None, "position_rms_px": None,
    }
    if simulated:  # the truth is known
        out.update(nominal_probe_error=relative_probe_error(nominal_probe, true_probe),
                   nominal_position_rms_px=position_rms_offset_free(nominal_pos, true_pos),
                   probe_error=relative_probe_error(probe, true_probe),
                   position_rms_px=position_rms_offset_free(pos, true_pos),
                   position_mean_offset_px=_mean_offset(pos, true_pos))
    return out


def _mean_offset(a, b) -> list[float]:
    d = np.asarray(a, np.float64).reshape(-1, 2) - np.asarray(b, np.float64).reshape(-1, 2)
    return [float(v) for v in d.mean(axis=0)]


def position_rms_offset_free(a, b) -> float:
    """RMS length of the position errors ``a - b`` (n, 2) after removing their mean, pixels. A
    reconstruction determines its positions only up to a common shift (the object shifts with
    them), so the mean offset is no error of the positions."""
    from ptycho.physics.errors import position_rms_error

    a = np.asarray(a, np.float64).reshape(-1, 2)
    b = np.asarray(b, np.float64).reshape(-1, 2)
    if a.shape != b.shape:
        return position_rms_error(a, b)  # raises the shape error
    return position_rms_error(a - (a - b).mean(axis=0), b)


def _fluence(positions, probe, dose: float, mask, pixel_size) -> dict:
    """Mean incident photons per pixel over the evaluation region (and per m^2 with a pixel
    size), with the exposures per pixel."""
    f = mean_fluence(fluence_map(mask.shape, positions, probe, dose), mask)
    return {"photons_per_px": f,
            "photons_per_m2": None if pixel_size is None else f / float(pixel_size) ** 2,
            "exposures_per_px": f / float(dose), "pixel_size_m": pixel_size}


def _score_snapshots(snaps, truth, mask, illum, peak, recon_path, test_path, probe=None,
                     positions=None) -> list[dict]:
    """Every convergence snapshot scored like the final object (the same alignment, metrics and
    data residual; an arm that refined its probe or positions: re-projected with the final ones,
    the only ones stored, so the last snapshot's residual is the final object's)."""
    if snaps.objects.shape[1:] != truth.shape:
        raise DatasetError(f"{recon_path}: snapshots are {snaps.objects.shape[1:]}, the ground "
                           f"truth is {truth.shape}")
    out = []
    for epoch, t, obj in zip(snaps.epochs, snaps.wall_time_s, snaps.objects):
        al, metrics, _ = score(obj, truth, mask, illum, peak)
        metrics["data"] = {"poisson_deviance": data_residual(
            obj, test_path, probe=probe, positions=positions)["poisson_deviance"]}
        out.append({"epoch": int(epoch), "wall_time_s": float(t),
                    "shift": [al.shift[0], al.shift[1]], "metrics": metrics})
    return out


def _open_pair(recon_path, test_path):
    """(reconstruction, (positions, probe, truth or None), illumination, probe peak, region) of a
    reconstruction and the test split it reconstructed, checked to belong together. The
    positions and probe are those that made the data (the nominal ones are what the arms were
    told; they differ only in a cell at a model-error level)."""
    rec = read_reconstruction(recon_path)
    with Dataset(test_path, require_object=False) as ds:
        positions, probe = ds.positions, ds.probe
        if ds.has_model_errors:
            # A cell at a model-error level is scored where the data illuminate (the true probe
            # and positions), as its exact cell is: every level of a cell is scored on the same
            # region and blocks, so levels compare (and pair) pixel for pixel.
            positions, probe = ds.true_positions, np.asarray(ds.true_probe)
            if probe.ndim == 3:  # incoherent modes: their summed intensity
                probe = np.sqrt(np.sum(np.abs(probe) ** 2, axis=0)).astype(np.complex64)
        truth = ds.object if ds.has_object else None
        shape, ds_dose, split = tuple(ds.object_shape), ds.dose, ds.split
    if split != "test":
        raise DatasetError(f"{test_path}: split is '{split}', expected the 'test' split")
    if tuple(rec.object.shape) != shape:
        what = "ground truth" if truth is not None else "object grid (no ground truth)"
        raise DatasetError(f"{recon_path}: reconstruction is {rec.object.shape}, the {what} of "
                           f"{test_path} is {shape}")
    if not math.isclose(rec.dose, ds_dose, rel_tol=1e-6):
        raise DatasetError(f"{recon_path}: dose {rec.dose} differs from the test split's dose "
                           f"{ds_dose} ({test_path})")
    peak = probe_peak_intensity(probe)
    illum = illumination_map(shape, positions, probe)
    mask = region_from_illumination(illum, peak, REGION_THRESHOLD, REGION_EROSION_PX)
    return rec, (positions, probe, truth), illum, peak, mask


def _flat_residual(illum: np.ndarray, test_path) -> float:
    return data_residual((illum > 0).astype(np.complex64), test_path)["poisson_deviance"]


def _add_halves(out: MetricsRecord, halves, test_path, shape) -> None:
    """FRC of the arm's two half-scan reconstructions (of the even and the odd test positions,
    :func:`ptycho.data.split.interleaved_halves`), into ``out`` (metrics and curves)."""
    if len(halves) != 2:
        raise DatasetError(f"half-scan FRC needs two reconstructions, got {len(halves)}")
    recs = [read_reconstruction(p) for p in halves]
    for p, r in zip(halves, recs):
        if tuple(r.object.shape) != tuple(shape):
            raise DatasetError(f"{p}: half-scan reconstruction is {r.object.shape}, expected "
                               f"{tuple(shape)}")
    with Dataset(test_path, require_object=False) as ds:
        probe, positions = ds.probe, ds.positions
    peak = probe_peak_intensity(probe)
    masks = [region_from_illumination(illumination_map(shape, positions[h::2], probe), peak,
                                      REGION_THRESHOLD, REGION_EROSION_PX) for h in (0, 1)]
    both = masks[0] & masks[1]
    if not both.any():
        raise DatasetError(f"{halves[0]}, {halves[1]}: the two half scans illuminate no common "
                           "pixel; the half-scan FRC cannot be computed")
    metrics, curves = half_frc(recs[0].object, recs[1].object, both, upsample=UPSAMPLE)
    for q, values in metrics.items():
        out.metrics.setdefault(q, {}).update(values)
    out.frc_halves = curves
    out.halves = {"recons": [str(p) for p in halves], "region_pixels": int(both.sum()),
                  "split": "interleaved: even and odd positions of the test scan"}


def _write(out: MetricsRecord, aligned_path, metrics_path, aligned, mask, arm, recon_path,
           truth=None) -> None:
    with atomic_path(aligned_path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("aligned", data=aligned.astype(np.complex64), track_times=False)
        if truth is not None:
            f.create_dataset("truth", data=np.asarray(truth, np.complex64), track_times=False)
        f.create_dataset("mask", data=mask.astype(np.uint8), track_times=False)
        f.attrs["arm"] = arm
        f.attrs["source"] = str(Path(recon_path))
    write_metrics(metrics_path, out)


def evaluate_without_truth(recon_path, test_path, metrics_path, aligned_path,
                           halves) -> MetricsRecord:
    """Ground-truth-free evaluation of one arm (the test split has no object).

    ``metrics``: ``data.poisson_deviance`` (data residual) and ``amplitude`` / ``phase``
    ``frc50_px_halves`` / ``frc17_px_halves`` (FRC between the arm's reconstructions of the two
    interleaved half scans ``halves``); ``reference.flat_object`` holds a flat object's data
    residual. ``aligned.h5`` holds the reconstruction with its mean phase over the region removed
    (``/aligned``) and the region (``/mask``); there is no ``/truth``.
    """
    if not halves:
        raise DatasetError(f"{test_path}: no ground truth, so the evaluation needs the arm's "
                           "reconstructions of the two half scans (halves)")
    rec, (positions, probe, _), illum, _, mask = _open_pair(recon_path, test_path)
    with Dataset(test_path, require_object=False) as ds:
        ds_dose, replicate, pixel_size = ds.dose, ds.replicate, ds.attrs.get("pixel_size_m")
    residual = data_residual(rec.object, test_path, probe=rec.probe, positions=rec.positions)
    out = MetricsRecord(
        arm=rec.arm, gridsize=int(rec.gridsize), dose=float(rec.dose),
        dose_label=dose_label(rec.dose), overlap_view=rec.overlap_view,
        region_pixels=int(mask.sum()),
        metrics={"data": {"poisson_deviance": residual["poisson_deviance"]}},
        recon_wall_time_s=float(rec.wall_time_s), recon_info=rec.info,
        reference={"flat_object": {"data": {"poisson_deviance":
                                            _flat_residual(illum, test_path)}}},
        evaluation={"region_threshold": REGION_THRESHOLD,
                    "region_erosion_px": REGION_EROSION_PX,
                    "registration_upsample": UPSAMPLE, "max_shift_px": MAX_SHIFT_PX},
        ground_truth=False,
        ground_truth_free_metrics=list(GROUND_TRUTH_FREE),
        data_residual=residual,
        recon_path=str(recon_path),
        test_path=str(test_path),
        replicate=int(replicate),
        fluence=_fluence(positions, probe, ds_dose, mask, pixel_size),
    )
    errors = model_errors(rec, test_path)
    if errors is not None:
        out.extra["model_errors"] = errors
    _add_halves(out, halves, test_path, rec.object.shape)
    region = rec.object[mask]
    offset = np.angle(np.sum(region)) if np.any(region) else 0.0
    _write(out, aligned_path, metrics_path, rec.object * np.exp(-1j * offset), mask, rec.arm,
           recon_path)
    return out
