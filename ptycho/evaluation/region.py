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


def evaluation_region(object_shape: tuple[int, int], positions: np.ndarray, probe: np.ndarray,
                      threshold: float = 0.1, erosion: int = 2) -> np.ndarray:
    """Boolean (H, W) mask of the evaluation region.

    A pixel is in the region when ``illumination_map(...) >= threshold * max |P|^2``; the mask is
    then eroded by ``erosion`` pixels (a disc structuring element of that radius; pixels on the
    object border count as outside). Raises ``PtychoError`` when the region is empty.
    """
    if not 0 < threshold <= 1:
        raise PtychoError(f"evaluation_region: threshold must be in (0, 1], got {threshold}")
    if erosion < 0:
        raise PtychoError(f"evaluation_region: erosion must be >= 0 pixels, got {erosion}")
    peak = float(np.max(np.abs(np.asarray(probe)) ** 2)) if np.size(probe) else 0.0
    if not np.isfinite(peak) or peak <= 0:
        raise PtychoError("evaluation_region: the probe has no intensity (max |P|^2 = 0)")
    illum = illumination_map(object_shape, positions, probe)
    mask = illum >= threshold * peak
    if erosion > 0 and mask.any():
        r = int(erosion)
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disc = (yy**2 + xx**2) <= r * r
        mask = ndimage.binary_erosion(mask, structure=disc, border_value=0)
    if not mask.any():
        n = len(np.asarray(positions).reshape(-1, 2))
        raise PtychoError(
            f"evaluation region is empty: {n} test positions, threshold {threshold} x max|P|^2, "
            f"erosion {erosion} px on a {object_shape[0]} x {object_shape[1]} object"
        )
    return mask


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """Tight (row, column) slices of the True pixels of a 2-D mask; ``PtychoError`` if empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise PtychoError(f"bounding_box: need a non-empty 2-D mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def soft_window(mask: np.ndarray, width: float | None = None) -> np.ndarray:
    """Apodisation window adapted to the region's shape, float64 of the mask's shape in [0, 1].

    ``w = sin^2(pi/2 * min(d / width, 1))`` with ``d`` the Euclidean distance (pixels) from a
    region pixel to the nearest pixel outside the region (0 outside). For a rectangular region this
    is a Tukey window; the default ``width`` is 1/8 of the shorter side of the region's bounding
    box (a Tukey alpha of 0.25), at least 1 pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if width is None:
        ys, xs = bounding_box(mask)
        width = max(1.0, 0.125 * min(ys.stop - ys.start, xs.stop - xs.start))
    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.sin(0.5 * np.pi * np.clip(d / float(width), 0.0, 1.0)) ** 2
