"""The evaluation region: object pixels the test scan actually illuminated.

docs/conventions.md, "Evaluation": object pixels of the test split whose summed probe intensity
``sum |P|^2`` reaches at least 10% of the probe's peak intensity ``max |P|^2`` (a threshold relative
to one probe, not to the summed map, so sparse scans keep a region), eroded by a small margin.
"""

from __future__ import annotations

import numpy as np

from ptycho.errors import PtychoError

# the region's building blocks live with the physics (fluence uses them too); re-exported here
from ptycho.physics.illumination import (
    illumination_map,
    probe_peak_intensity,
    region_from_illumination,
)


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

