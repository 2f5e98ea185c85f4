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
from ptycho.rng import int_seed, replicate_labels, rng_for


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


def write_split(path, obj, probe, positions, dose, meta: DatasetMeta, chunk: int, rng,
                nominal: dict | None = None) -> dict:
    """Simulate and stream one split to ``path``; returns per-file statistics.

    ``probe`` (N, N) or modes (M, N, N) and ``positions`` make the data. ``nominal`` (a cell with
    model errors): ``{"probe": (N, N) or (M, N, N), "positions": (n, 2)}`` the file stores as
    ``/probe`` (``/probe_modes``) and ``/positions``, the true ones as ``/true_probe`` and
    ``/true_positions``."""
    n = len(positions)
    total = 0.0
    zero_frac = 0.0
    stored_probe, stored_pos, extras = probe, positions, None
    if nominal is not None:
        nom_probe = np.asarray(nominal["probe"], np.complex64)
        stored_pos = np.asarray(nominal["positions"], np.float64)
        extras = {"true_probe": np.asarray(probe, np.complex64),
                  "true_positions": np.asarray(positions, np.float64)}
        if nom_probe.ndim == 3 and len(nom_probe) > 1:
            extras["probe_modes"] = nom_probe
        stored_probe = nom_probe[0] if nom_probe.ndim == 3 else nom_probe
    with DatasetWriter(path, n, stored_pos, stored_probe, obj, meta, chunk=chunk,
                       extras=extras) as w:
        for s in range(0, n, chunk):
            lam = simulate_expected(obj, probe, positions[s : s + chunk], dose)
            counts = poisson_counts(lam, rng)
            w.write(counts)
            total += float(counts.sum(dtype=np.float64))
            zero_frac += float(np.count_nonzero(counts == 0))
    N = probe.shape[-1]
    return {
        "n_patterns": n,
        "mean_photons_per_pattern": total / max(n, 1),
        "fraction_zero_pixels": zero_frac / max(n * N * N, 1),
    }


def nominal_inputs(study: StudyConfig, scale: ScaleConfig, level, probe: np.ndarray,
                   overlap_view: str, object_shape) -> tuple[np.ndarray, np.ndarray, dict]:
    """What an error level does to a cell: (true probe or modes that make the data, nominal probe
    the arms get, record); positions are handled per split by :func:`nominal_positions`."""
    from ptycho.physics.errors import coherent_modes, probe_with_error

    rec = {"label": level.label, "kind": level.kind, "value": level.value,
           "probe_error": 0.0, "position_rms_error_px": 0.0}
    true, nominal = probe, probe
    if level.kind == "probe":
        simulated = study.probe.source == "simulated"
        nominal, prec = probe_with_error(
            probe, level.probe_kind, level.probe_error,
            rng_seed=int_seed(study.seeds.simulation, "probe_error", level.label),
            aperture_radius=study.probe.aperture_radius if simulated else None,
            fresnel_number=study.probe.fresnel_number if simulated else None,
            key="errors/probe")
        rec["probe"] = prec
    elif level.kind == "coherence":
        true = coherent_modes(probe, level.fractions)
        nominal = true if level.nominal_modes == "all" else true[:1]
        rec["fractions"] = list(level.fractions)
        rec["nominal_modes"] = level.nominal_modes
    from ptycho.physics.errors import relative_probe_error

    rec["probe_error"] = relative_probe_error(nominal, true)
    return true, nominal, rec


def nominal_positions(study: StudyConfig, scale: ScaleConfig, level, true_pos: np.ndarray,
                      object_shape, overlap_view: str, split: str, replicate: int):
    """Nominal positions of one split at a position-error level, and their record."""
    from ptycho.physics.errors import positions_with_error

    region = ScanRegion.for_object(object_shape, scale.N)
    rng = rng_for(study.seeds.simulation, "position_error", level.label, overlap_view, split,
                  *replicate_labels(replicate))
    return positions_with_error(true_pos, rng, jitter_px=level.jitter_px, scale=level.scale,
                                rotation_deg=level.rotation_deg, drift_px=level.drift_px,
                                centre=((region.y0 + region.y1) / 2, (region.x0 + region.x1) / 2),
                                bounds=(region.y0, region.y1, region.x0, region.x1))


def simulate_cell(study: StudyConfig, scale_name: str, dose: str | float, overlap_view: str,
                  train_path, test_path, replicate: int = 0, error_level: str = "") -> dict:
    """Write the train and test files of one cell's replicate ``replicate`` (0 .. replicates - 1
    of the scale) at error level ``error_level`` ('' : exact probe and positions); return the
    cell summary (JSON-able).

    At an error level the data are made by the true probe (modes) and positions; the files
    store the nominal ones as ``/probe`` and ``/positions`` (what the arms read) and the true ones
    beside them. Probe and position errors leave the counts of the exact cell unchanged (same
    noise streams): only what the arms are told differs."""
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
    level = None
    if error_level not in ("", "exact"):
        if study.errors is None:
            raise ConfigError(f"error level '{error_level}' requested, but the study has no "
                              "'errors' section")
        level = study.errors.level(error_level)
        cfg["error_level"] = level.label
    true_probe, nom_probe, err_rec = probe, probe, None
    if level is not None:
        true_probe, nom_probe, err_rec = nominal_inputs(study, scale, level, probe, overlap_view,
                                                        obj.shape)
    summary = {
        "study": study.study, "scale": scale_name, "dose": dose_value, "dose_label": label,
        "overlap_view": overlap_view, "overlap_target": f_target, "overlap_measured": f_meas,
        "overlap_area": f_area, "probe_diameter_px": d, "N": scale.N,
        "object_size": list(obj.shape), "split_row": row, "splits": {},
        "seed": study.seeds.simulation, "replicate": replicate,
    }
    for split, pos, path in (("train", train, train_path), ("test", test, test_path)):
        illum = probe if true_probe.ndim == 2 else np.sqrt(np.sum(np.abs(true_probe) ** 2, 0))
        fluence = scan_fluence(obj.shape, pos, illum, dose_value, scale.pixel_size_m)
        nominal, errors = None, None
        if level is not None:
            nom_pos, pos_rec = pos, None
            if level.kind == "positions":
                nom_pos, pos_rec = nominal_positions(study, scale, level, pos, obj.shape,
                                                     overlap_view, split, replicate)
            errors = dict(err_rec)
            if pos_rec is not None:
                errors["positions"] = pos_rec
                errors["position_rms_error_px"] = pos_rec["rms_error_px"]
            nominal = {"probe": nom_probe, "positions": nom_pos}
        meta = DatasetMeta(dose=dose_value, overlap_target=f_target,
                           overlap_measured=measured_overlap(pos, d) if len(pos) > 1 else f_meas,
                           overlap_area=f_area, probe_diameter=d, split=split,
                           seed=study.seeds.simulation, config=cfg, replicate=replicate,
                           fluence=fluence, errors=errors)
        rng = rng_for(study.seeds.simulation, "noise", label, overlap_view, split,
                      *replicate_labels(replicate))
        summary["splits"][split] = write_split(path, obj, true_probe, pos, dose_value, meta,
                                               scale.chunk_size, rng, nominal=nominal)
        summary["splits"][split]["fluence"] = fluence
        if errors is not None:
            summary["splits"][split]["errors"] = errors
    shared = shared_pixels(obj.shape, train, test, scale.N)
    if shared:
        raise DatasetError(f"train and test patches share {shared} object pixels")
    summary["shared_pixels"] = shared
    summary["wall_time_s"] = time.perf_counter() - t0
    return summary


__all__ = ["build_object", "build_probe", "cell_geometry", "nominal_inputs", "nominal_positions",
           "scan_geometry", "simulate_cell"]
