"""Illumination and fluence of a scan (docs/conventions.md, "Fluence" and "Evaluation").

- ``illumination_map``: summed probe intensity ``sum_k |P(x - r_k)|^2`` over the exposures.
- ``region_from_illumination``: the lit region, pixels whose summed intensity reaches a fraction of
  one probe's peak intensity, eroded by a margin (the evaluation region of the test split).
- ``fluence_map``: incident photons per object pixel, ``D * sum_k |P(x - r_k)|^2 / sum |P|^2``
  with D the dose per exposure: each exposure spreads its D photons over the object with the
  probe's intensity profile, so the map sums to D x (number of exposures) over an object that
  holds every patch.
- ``mean_fluence``: the map's mean over a region (per cell: over the evaluation region).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ptycho.errors import PtychoError
from ptycho.physics.forward import patch_corners

LIT_THRESHOLD = 0.1
"""A pixel is lit when its summed probe intensity reaches this fraction of the probe's peak."""
LIT_EROSION_PX = 2
"""Margin (px) eroded from the lit region."""


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


def region_from_illumination(illumination: np.ndarray, peak: float,
                             threshold: float = LIT_THRESHOLD, erosion: int = LIT_EROSION_PX) -> np.ndarray:
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


def fluence_map(object_shape: tuple[int, int], positions: np.ndarray, probe: np.ndarray,
                dose: float) -> np.ndarray:
    """Incident photons per object pixel, (H, W) float64: ``dose * illumination / sum |P|^2``.

    ``dose`` is photons per exposure; the map counts each exposure's photons where its probe
    lights the object (integer patch placement, as ``illumination_map``), so its sum over an object
    that holds every patch is ``dose * len(positions)``."""
    dose = float(dose)
    if not (np.isfinite(dose) and dose > 0):
        raise PtychoError(f"fluence: dose must be a positive number of photons, got {dose}")
    total = float(np.sum(np.abs(np.asarray(probe)) ** 2))
    if not (np.isfinite(total) and total > 0):
        raise PtychoError(f"fluence: the probe has no usable intensity (sum |P|^2 = {total})")
    return illumination_map(object_shape, positions, probe) * (dose / total)


def mean_fluence(fluence: np.ndarray, region: np.ndarray) -> float:
    """Mean of a fluence map over a boolean region (photons per pixel); error if it is empty."""
    region = np.asarray(region, dtype=bool)
    if region.shape != np.shape(fluence) or not region.any():
        raise PtychoError(f"fluence: the region ({region.shape}) is empty or does not match the "
                          f"map {np.shape(fluence)}")
    return float(np.mean(np.asarray(fluence, dtype=np.float64)[region]))


def scan_fluence(object_shape: tuple[int, int], positions: np.ndarray, probe: np.ndarray,
                 dose: float, pixel_size_m: float | None = None) -> dict:
    """Fluence of one scan, JSON-able: mean incident photons per pixel over its lit region
    (``region_from_illumination`` with the default threshold and erosion), the same per m^2 when
    the object pixel size is known (None otherwise), and the mean exposures per pixel
    (fluence / dose, each exposure weighted by its |P|^2 / sum |P|^2)."""
    fmap = fluence_map(object_shape, positions, probe, dose)
    peak = probe_peak_intensity(probe)
    total = float(np.sum(np.abs(np.asarray(probe)) ** 2))
    region = region_from_illumination(fmap * (total / float(dose)), peak)
    f = mean_fluence(fmap, region)
    return {
        "photons_per_px": f,
        "photons_per_m2": None if pixel_size_m is None else f / float(pixel_size_m) ** 2,
        "exposures_per_px": f / float(dose),
        "region_pixels": int(region.sum()),
        "pixel_size_m": pixel_size_m,
    }


__all__ = ["LIT_EROSION_PX", "LIT_THRESHOLD", "fluence_map", "illumination_map", "mean_fluence",
           "probe_peak_intensity", "region_from_illumination", "scan_fluence"]
