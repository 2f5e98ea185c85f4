"""Scan geometry: raster and Fermat-spiral scans at a target overlap, overlap measures.

Overlap fraction f = 1 - s/d, s the scan step and d the 90%-energy probe diameter. The nominal
step is calibrated (deterministically, same seed) so that the median nearest-neighbour distance of
the jittered positions equals the target step, i.e. the measured overlap meets the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ptycho.errors import ConfigError

GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


@dataclass(frozen=True)
class ScanRegion:
    """Rectangle of allowed patch centres (inclusive), in object pixels."""

    y0: float
    y1: float
    x0: float
    x1: float

    @classmethod
    def for_object(cls, object_shape: tuple[int, int], N: int) -> ScanRegion:
        H, W = object_shape
        # floor(c - N/2) >= 0 and floor(c - N/2) + N <= H - 1 (one spare pixel for sub-pixel shifts)
        return cls(N / 2, H - N / 2 - 1, N / 2, W - N / 2 - 1)


def _raster(step: float, region: ScanRegion, jitter: float, rng: np.random.Generator) -> np.ndarray:
    ny = int(np.floor((region.y1 - region.y0) / step)) + 1
    nx = int(np.floor((region.x1 - region.x0) / step)) + 1
    # centre the grid in the region
    oy = region.y0 + 0.5 * ((region.y1 - region.y0) - (ny - 1) * step)
    ox = region.x0 + 0.5 * ((region.x1 - region.x0) - (nx - 1) * step)
    yy, xx = np.meshgrid(oy + step * np.arange(ny), ox + step * np.arange(nx), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], axis=1)
    pos += jitter * step * rng.uniform(-1.0, 1.0, size=pos.shape)
    return pos


def _fermat(step: float, region: ScanRegion, jitter: float, rng: np.random.Generator) -> np.ndarray:
    cy, cx = (region.y0 + region.y1) / 2, (region.x0 + region.x1) / 2
    rmax = np.hypot(region.y1 - region.y0, region.x1 - region.x0) / 2
    # Fermat spiral r = c sqrt(n): each point occupies area pi c^2; with c ~ 0.5 step the nearest
    # neighbour distance is ~ step (calibrated afterwards anyway).
    c = 0.5 * step
    n = int(np.ceil((rmax / c) ** 2)) + 1
    k = np.arange(n)
    r, t = c * np.sqrt(k), k * GOLDEN_ANGLE
    pos = np.stack([cy + r * np.sin(t), cx + r * np.cos(t)], axis=1)
    pos += jitter * step * rng.uniform(-1.0, 1.0, size=pos.shape)
    return pos


def _clip(pos: np.ndarray, region: ScanRegion) -> np.ndarray:
    keep = (
        (pos[:, 0] >= region.y0) & (pos[:, 0] <= region.y1)
        & (pos[:, 1] >= region.x0) & (pos[:, 1] <= region.x1)
    )
    return pos[keep]


def nearest_neighbour_distances(positions: np.ndarray) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    if len(pos) < 2:
        raise ConfigError("overlap needs at least two scan positions")
    d, _ = cKDTree(pos).query(pos, k=2)
    return d[:, 1]


def measured_overlap(positions: np.ndarray, diameter: float) -> float:
    """f = 1 - s/d with s the median nearest-neighbour distance of the actual positions."""
    return float(1.0 - np.median(nearest_neighbour_distances(positions)) / diameter)


def disc_area_overlap(distance: np.ndarray, diameter: float) -> np.ndarray:
    """Fractional area shared by two discs of ``diameter`` whose centres are ``distance`` apart."""
    r = diameter / 2.0
    d = np.clip(np.asarray(distance, dtype=np.float64), 0.0, 2 * r)
    area = 2 * r**2 * np.arccos(d / (2 * r)) - (d / 2) * np.sqrt(np.maximum(4 * r**2 - d**2, 0))
    return area / (np.pi * r**2)


def mean_area_overlap(positions: np.ndarray, diameter: float) -> float:
    """Mean area overlap of each probe disc with its nearest neighbour's disc (for reference)."""
    return float(np.mean(disc_area_overlap(nearest_neighbour_distances(positions), diameter)))


def scan_positions(
    pattern: str,
    overlap: float,
    diameter: float,
    region: ScanRegion,
    jitter: float,
    rng_seed: np.random.SeedSequence | int,
    calibration_rounds: int = 6,
) -> np.ndarray:
    """Scan centres (n, 2) float64 (y, x) at target overlap ``overlap`` for probe ``diameter``.

    The same jitter draws are reused in every calibration round (same seed), so the result is
    deterministic; the step is rescaled until the median nearest-neighbour distance equals
    ``(1 - overlap) * diameter``.
    """
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must lie in [0, 1), got {overlap}")
    if diameter <= 0:
        raise ConfigError(f"probe diameter must be > 0, got {diameter}")
    make = {"raster": _raster, "fermat": _fermat}.get(pattern)
    if make is None:
        raise ConfigError(f"scan pattern must be 'raster' or 'fermat', got '{pattern}'")
    target = (1.0 - overlap) * diameter
    if target < 0.5:
        raise ConfigError(
            f"overlap {overlap} with probe diameter {diameter:.2f} px gives a step of {target:.3f} px; "
            "steps below half a pixel are not supported"
        )
    step = target
    pos = None
    for _ in range(calibration_rounds):
        rng = np.random.default_rng(rng_seed)
        pos = _clip(make(step, region, jitter, rng), region)
        if len(pos) < 4:
            raise ConfigError(
                f"scan: only {len(pos)} positions fit the object at step {step:.2f} px; "
                "use a larger object or a higher overlap"
            )
        med = float(np.median(nearest_neighbour_distances(pos)))
        if abs(med - target) < 1e-3 * target:
            break
        step *= target / med
    return pos
