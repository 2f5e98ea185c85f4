"""The evaluation region: object pixels the test scan actually illuminated.

shared/DESIGN.md, "Evaluation": object pixels of the test split whose summed probe intensity
``sum |P|^2`` reaches at least 10% of the probe's peak intensity ``max |P|^2`` (a threshold relative
to one probe, not to the summed map, so sparse scans keep a region), eroded by a small margin.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ptycho.errors import PtychoError
from ptycho.physics.forward import patch_corners


def illumination_map(object_shape: tuple[int, int], positions: np.ndarray,
                     probe: np.ndarray) -> np.ndarray:
    """Summed probe intensity ``sum_k |P|^2`` over the scan, (H, W) float64.

    ``positions`` (n, 2) are patch centres (y, x) in object pixels; each patch of the (N, N) probe
    is placed at the integer corner ``floor(c - N/2)`` (sub-pixel placement is irrelevant for a
    threshold region). Parts of a patch that fall outside the object are dropped.
    Units: those of ``|P|^2`` (the probe as stored, max |P| = 1 for the simulated probe).
    """
    H, W = (int(s) for s in object_shape)
    intensity = np.abs(np.asarray(probe)) ** 2
    if intensity.ndim != 2 or intensity.shape[0] != intensity.shape[1]:
        raise PtychoError(f"illumination_map: probe must be (N, N), got shape {intensity.shape}")
    N = intensity.shape[0]
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((H, W), dtype=np.float64)
    if len(pos) == 0:
        return out
    for y0, x0 in patch_corners(pos, N):
        ya, yb = max(y0, 0), min(y0 + N, H)
        xa, xb = max(x0, 0), min(x0 + N, W)
        if ya >= yb or xa >= xb:
            continue
        out[ya:yb, xa:xb] += intensity[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


def probe_peak_intensity(probe: np.ndarray) -> float:
    """``max |P|^2`` of the probe; ``PtychoError`` when it is zero or not finite."""
    peak = float(np.max(np.abs(np.asarray(probe)) ** 2)) if np.size(probe) else 0.0
    if not np.isfinite(peak) or peak <= 0:
        raise PtychoError(f"the probe has no usable intensity (max |P|^2 = {peak})")
    return peak


def region_from_illumination(illumination: np.ndarray, peak: float, threshold: float = 0.1,
                             erosion: int = 2) -> np.ndarray:
    """Boolean (H, W) region ``illumination >= threshold * peak``, eroded by ``erosion`` pixels
    (a disc structuring element of that radius; pixels beyond the object border count as
    outside). Raises ``PtychoError`` when the region is empty."""
    if not 0 < threshold <= 1:
        raise PtychoError(f"evaluation region: threshold must be in (0, 1], got {threshold}")
    if erosion < 0:
        raise PtychoError(f"evaluation region: erosion must be >= 0 pixels, got {erosion}")
    illumination = np.asarray(illumination, dtype=np.float64)
    mask = illumination >= threshold * peak
    if erosion > 0 and mask.any():
        r = int(erosion)
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        mask = ndimage.binary_erosion(mask, structure=(yy**2 + xx**2) <= r * r, border_value=0)
    if not mask.any():
        H, W = illumination.shape
        raise PtychoError(
            f"evaluation region is empty: no pixel of the {H} x {W} object keeps summed probe "
            f"intensity >= {threshold} x max|P|^2 after a {erosion} px erosion"
        )
    return mask


def evaluation_region(object_shape: tuple[int, int], positions: np.ndarray, probe: np.ndarray,
                      threshold: float = 0.1, erosion: int = 2) -> np.ndarray:
    """Boolean (H, W) mask of the evaluation region.

    A pixel is in the region when ``illumination_map(...) >= threshold * max |P|^2``; the mask is
    then eroded by ``erosion`` pixels (see :func:`region_from_illumination`). Raises
    ``PtychoError`` when the region is empty (no positions, a dark probe, or erosion removes all).
    """
    peak = probe_peak_intensity(probe)
    return region_from_illumination(illumination_map(object_shape, positions, probe), peak,
                                    threshold, erosion)


def tukey(n: int, alpha: float = 0.25) -> np.ndarray:
    """Tukey (tapered cosine) window of ``n`` samples, float64, as ``scipy.signal.windows.tukey``
    (symmetric): flat in the middle, cosine tapers over ``alpha / 2`` of the length at each end.
    Written here because importing ``scipy.signal`` costs seconds."""
    if n <= 1 or alpha <= 0:
        return np.ones(max(n, 0))
    x = np.linspace(0.0, 1.0, n)
    w = np.ones(n)
    a = min(float(alpha), 1.0)
    lo, hi = x < a / 2, x >= 1 - a / 2
    w[lo] = 0.5 * (1 + np.cos(np.pi * (2 * x[lo] / a - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * (2 * x[hi] / a - 2 / a + 1)))
    return w


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """Tight (row, column) slices of the True pixels of a 2-D mask; ``PtychoError`` if empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise PtychoError(f"bounding_box: need a non-empty 2-D mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)

