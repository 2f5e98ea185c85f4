"""Photon-counting noise."""

from __future__ import annotations

import numpy as np


def poisson_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Measured counts ~ Poisson(expected), returned as float32 counts (integers in value)."""
    lam = np.asarray(expected, dtype=np.float64)
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("expected counts must be finite and non-negative")
    return rng.poisson(lam).astype(np.float32)
