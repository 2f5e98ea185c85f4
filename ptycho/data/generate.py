"""Phase C: simulate one dose x overlap cell into a train and a test dataset file.

Scan positions depend only on the overlap view (so every dose and replicate sees the same
geometry); Poisson noise is seeded per (dose, overlap view, split) and, for replicates k >= 1, per
replicate (``ptycho.rng.replicate_labels``: replicate 0 draws the streams of a study without
replicates). Every file records its fluence (``ptycho.physics.illumination.scan_fluence``). Patterns are simulated and written chunk by chunk,
so memory is bounded by one chunk whatever the number of patterns.
"""

from __future__ import annotations

import time

import numpy as np

from ptycho.config import ScaleConfig, StudyConfig, dose_label
from ptycho.data.dataset import DatasetMeta, DatasetWriter
from ptycho.data.split import shared_pixels, split_positions
from ptycho.errors import ConfigError, DatasetError
from ptycho.physics.forward import check_positions, simulate_expected
from ptycho.physics.illumination import scan_fluence
from ptycho.physics.noise import poisson_counts
from ptycho.physics.object import load_object, skimage_object
from ptycho.physics.probe import energy_diameter, load_probe, simulated_probe
from ptycho.physics.scan import ScanRegion, mean_area_overlap, measured_overlap, scan_positions
from ptycho.rng import replicate_labels, rng_for


def build_object(study: StudyConfig, scale: ScaleConfig) -> np.ndarray:
    o = study.object
    if o.source == "file":
        obj = load_object(o.path)
    else:
        obj = skimage_object(scale.object_size, o.amplitude_image, o.phase_image,
                             o.amplitude_range, o.phase_range)
    return obj


def build_probe(study: StudyConfig, scale: ScaleConfig) -> np.ndarray:
    p = study.probe
    if p.source == "file":
        return load_probe(p.path, scale.N)
    return simulated_probe(scale.N, p.aperture_radius, p.fresnel_number)


def cell_geometry(study: StudyConfig, scale: ScaleConfig, overlap_view: str):
    """Object, probe, probe diameter and (train, test) positions of an overlap view."""
    obj = build_object(study, scale)
    probe = build_probe(study, scale)
    d, train, test, row = scan_geometry(study, scale, obj.shape, probe, overlap_view)
    return obj, probe, d, train, test, row


def scan_geometry(study: StudyConfig, scale: ScaleConfig, object_shape: tuple[int, int],
                  probe: np.ndarray, overlap_view: str):
    """Probe diameter (px), (train, test) positions and the split row of an overlap view; needs
    only the object's shape, so the workflow checks it before any job (``ptycho.data.preflight``)."""
    N = scale.N
    H, W = object_shape
    if N + 2 > min(H, W) // 2:
        raise ConfigError(f"probe of N = {N} is too large for the {H} x {W} object")
    d = energy_diameter(probe, 0.9)
    region = ScanRegion.for_object(object_shape, N)
    seq = np.random.SeedSequence(entropy=study.seeds.simulation,
                                 spawn_key=(abs(hash_label("scan")), abs(hash_label(overlap_view))))
    pos = scan_positions(study.scan.pattern, study.overlap(overlap_view), d, region,
                         study.scan.jitter, seq)
    check_positions(object_shape, pos, N)
    train, test, row = split_positions(pos, N, study.scan.train_fraction)
    return d, train, test, row


def hash_label(label: str) -> int:
    import zlib

    return zlib.crc32(label.encode()) & 0x7FFFFFFF


def write_split(path, obj, probe, positions, dose, meta: DatasetMeta, chunk: int, rng) -> dict:
    """Simulate and stream one split to ``path``; returns per-file statistics."""
    n = len(positions)
    total = 0.0
    zero_frac = 0.0
    with DatasetWriter(path, n, positions, probe, obj, meta, chunk=chunk) as w:
        for s in range(0, n, chunk):
            lam = simulate_expected(obj, probe, positions[s : s + chunk], dose)
            counts = poisson_counts(lam, rng)
            w.write(counts)
            total += float(counts.sum(dtype=np.float64))
            zero_frac += float(np.count_nonzero(counts == 0))
    N = probe.shape[0]
    return {
        "n_patterns": n,
        "mean_photons_per_pattern": total / max(n, 1),
        "fraction_zero_pixels": zero_frac / max(n * N * N, 1),
    }


def simulate_cell(study: StudyConfig, scale_name: str, dose: str | float, overlap_view: str,
                  train_path, test_path, replicate: int = 0) -> dict:
    """Write the train and test files of one cell's replicate ``replicate`` (0 .. replicates - 1
    of the scale); return the cell summary (JSON-able)."""
    t0 = time.perf_counter()
    scale = study.scale(scale_name)
    replicate = int(replicate)
    if not 0 <= replicate < scale.replicates:
        raise ConfigError(f"replicate {replicate} is outside the scale '{scale_name}' "
                          f"replicates 0 .. {scale.replicates - 1}")
    dose_value = study.dose(dose) if isinstance(dose, str) else float(dose)
    if not dose_value > 0:
        raise ConfigError(f"dose must be > 0 photons per exposure, got {dose_value}")
    label = dose_label(dose_value)
    obj, probe, d, train, test, row = cell_geometry(study, scale, overlap_view)
    f_target = study.overlap(overlap_view)
    all_pos = np.concatenate([train, test])
    f_meas = measured_overlap(all_pos, d)
    f_area = mean_area_overlap(all_pos, d)
    cfg = {"study": study.to_dict(), "scale": scale_name, "dose_label": label,
           "overlap_view": overlap_view, "split_row": row, "object_size": list(obj.shape),
           "replicate": replicate}
    summary = {
        "study": study.study, "scale": scale_name, "dose": dose_value, "dose_label": label,
        "overlap_view": overlap_view, "overlap_target": f_target, "overlap_measured": f_meas,
        "overlap_area": f_area, "probe_diameter_px": d, "N": scale.N,
        "object_size": list(obj.shape), "split_row": row, "splits": {},
        "seed": study.seeds.simulation, "replicate": replicate,
    }
    for split, pos, path in (("train", train, train_path), ("test", test, test_path)):
        fluence = scan_fluence(obj.shape, pos, probe, dose_value, scale.pixel_size_m)
        meta = DatasetMeta(dose=dose_value, overlap_target=f_target,
                           overlap_measured=measured_overlap(pos, d) if len(pos) > 1 else f_meas,
                           overlap_area=f_area, probe_diameter=d, split=split,
                           seed=study.seeds.simulation, config=cfg, replicate=replicate,
                           fluence=fluence)
        rng = rng_for(study.seeds.simulation, "noise", label, overlap_view, split,
                      *replicate_labels(replicate))
        summary["splits"][split] = write_split(path, obj, probe, pos, dose_value, meta,
                                               scale.chunk_size, rng)
        summary["splits"][split]["fluence"] = fluence
    shared = shared_pixels(obj.shape, train, test, scale.N)
    if shared:
        raise DatasetError(f"train and test patches share {shared} object pixels")
    summary["shared_pixels"] = shared
    summary["wall_time_s"] = time.perf_counter() - t0
    return summary


__all__ = ["build_object", "build_probe", "cell_geometry", "scan_geometry", "simulate_cell"]
