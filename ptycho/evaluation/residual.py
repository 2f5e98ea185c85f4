"""Ground-truth-free quality measures of a reconstruction.

Data residual
    The reconstruction is re-projected through the forward model (``ptycho.physics.forward``:
    expected counts ``lambda = D |FFT(P O_patch)|^2 / sum |P|^2`` at every test position, with the
    split's probe and dose) and compared with the measured counts by the Poisson deviance
    ``2 sum_pixels [y log(y / lambda) - (y - lambda)]`` (``y log y = 0`` at ``y = 0``), reported
    as the mean over patterns (``poisson_deviance``, photons-free: lower is better; for the true
    object it is about the number of pixels that hold counts, the noise floor). One global
    intensity scale ``alpha = sum y / sum lambda`` (the Poisson maximum-likelihood scale) is fitted
    first, the analogue of the global complex scale of the ground-truth alignment; an all-zero
    reconstruction keeps alpha = 1 and scores the worst. Counts are streamed in batches.

FRC of half scans
    The test scan is split into two interleaved halves (even and odd positions in scan order);
    each arm reconstructs each half separately, and the Fourier ring correlation between the two
    half reconstructions (the second aligned to the first: registration, global complex scale,
    phase-ramp removal, over the pixels both halves illuminate) gives a resolution in pixels at
    the 0.5 and 1/7 thresholds without a ground truth.
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.data.dataset import Dataset
from ptycho.errors import PtychoError
from ptycho.evaluation.frc import FRC_THRESHOLDS, frc_curve, frc_resolution
from ptycho.physics.forward import expected_counts, extract_patches

LAMBDA_FLOOR = 1e-9  # photons: keeps the deviance of an empty reconstruction finite (and huge)
HALF_SUFFIX = "_halves"


def _xlogy_ratio(y: np.ndarray, lam: np.ndarray) -> float:
    pos = y > 0
    return float(np.sum(y[pos] * np.log(y[pos] / lam[pos])))


def data_residual(obj: np.ndarray, test_path, chunk: int = 256, probe=None,
                  positions=None) -> dict:
    """Poisson deviance of ``obj`` (H, W) re-projected at the test split's positions.

    ``probe`` ((N, N) or incoherent modes (M, N, N)) and ``positions`` (n, 2): the arm's own final
    probe and positions when it refined them (None: the split's nominal probe modes and
    positions). Positions are clipped to keep every patch on the object grid.

    Returns ``{"poisson_deviance": mean per pattern (after the global intensity scale),
    "poisson_deviance_unscaled": the same with alpha = 1, "intensity_scale": alpha,
    "per_pixel": poisson_deviance / N^2, "n_patterns", "mean_counts_per_pattern"}``.
    """
    obj = np.asarray(obj, dtype=np.complex64)
    if not np.all(np.isfinite(obj)):
        raise PtychoError("data residual: the reconstruction contains NaN or inf")
    a = s_y = s_lam = 0.0
    with Dataset(test_path, require_object=False) as ds:
        if tuple(obj.shape) != tuple(ds.object_shape):
            raise PtychoError(f"data residual: reconstruction {obj.shape} is not the object grid "
                              f"{ds.object_shape} of {test_path}")
        dose, N, n = ds.dose, ds.N, ds.n
        probe = ds.probe_modes if probe is None else np.asarray(probe)
        probe = probe[0] if probe.ndim == 3 and len(probe) == 1 else probe
        if positions is None:
            pos = ds.positions
        else:
            pos = np.asarray(positions, dtype=np.float64)
            if pos.shape != (n, 2):
                raise PtychoError(f"data residual: {pos.shape} positions for the {n} patterns of "
                                  f"{test_path}")
            H, W = obj.shape
            pos = np.stack([np.clip(pos[:, 0], N / 2, H - N / 2 - 1),
                            np.clip(pos[:, 1], N / 2, W - N / 2 - 1)], axis=1)
        for idx, y in ds.iter_batches(chunk):
            lam = expected_counts(extract_patches(obj, pos[idx], N), probe, dose)
            lam = np.maximum(lam, LAMBDA_FLOOR)
            y = y.astype(np.float64)
            a += _xlogy_ratio(y, lam)
            s_y += float(y.sum())
            s_lam += float(lam.sum())
    empty = s_lam <= LAMBDA_FLOOR * n * N * N * (1 + 1e-6)
    alpha = 1.0 if empty or s_y <= 0 else s_y / s_lam
    unscaled = 2.0 * (a - s_y + s_lam)
    scaled = 2.0 * (a - s_y * math.log(alpha) - s_y + alpha * s_lam)
    if not (math.isfinite(scaled) and math.isfinite(unscaled)):
        raise PtychoError("data residual: the Poisson deviance is not finite")
    return {"poisson_deviance": scaled / n, "poisson_deviance_unscaled": unscaled / n,
            "intensity_scale": alpha, "per_pixel": scaled / (n * N * N), "n_patterns": n,
            "mean_counts_per_pattern": s_y / n}


def half_frc(half1: np.ndarray, half2: np.ndarray, mask: np.ndarray, illumination=None,
             upsample: int = 20) -> tuple[dict, dict]:
    """FRC between two half-scan reconstructions (H, W) over ``mask`` (pixels both halves
    illuminate): the second is aligned to the first like an arm to the ground truth.

    Returns ``(metrics, curves)``: ``{"amplitude": {"frc50_px_halves", "frc17_px_halves"},
    "phase": {...}}`` and ``{"amplitude": {"freq", "frc"}, "phase": {...}}``.
    """
    from ptycho.evaluation.align import MAX_SHIFT_PX, align_to_truth

    al = align_to_truth(half2, half1, mask, upsample=upsample, max_shift=MAX_SHIFT_PX,
                        illumination=illumination)
    h1 = np.asarray(half1, dtype=np.complex128)
    metrics, curves = {}, {}
    for q, f in (("amplitude", np.abs), ("phase", np.angle)):
        freq, frc = frc_curve(f(h1), f(al.aligned), mask)
        metrics[q] = {f"{name}{HALF_SUFFIX}": frc_resolution(freq, frc, thr)
                      for name, thr in FRC_THRESHOLDS.items()}
        curves[q] = {"freq": freq.tolist(), "frc": frc.tolist()}
    return metrics, curves


__all__ = ["HALF_SUFFIX", "data_residual", "half_frc"]
