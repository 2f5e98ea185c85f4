"""K-nearest-neighbour grouping for gridsize g (groups of C = g^2 positions).

Each scan position seeds one group: the seed plus C - 1 neighbours drawn (seeded) from its K
nearest neighbours. Neighbours whose offset from the seed exceeds N/2 along y or x are not drawn
while closer candidates remain, so the patches of a group overlap and fit on a 2N canvas.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ptycho.errors import ConfigError


def make_groups(positions: np.ndarray, gridsize: int, k: int, N: int,
                rng: np.random.Generator) -> np.ndarray:
    """Indices (n_groups, C) into ``positions``; row i is seeded by position i (first column)."""
    pos = np.asarray(positions, dtype=np.float64)
    if gridsize not in (1, 2):
        raise ConfigError(f"gridsize must be 1 or 2, got {gridsize}")
    C = gridsize * gridsize
    if gridsize == 1:
        return np.arange(len(pos))[:, None]
    if k < C:
        raise ConfigError(f"neighbours K = {k} must be >= gridsize^2 = {C}")
    if len(pos) < C:
        raise ConfigError(f"gridsize {gridsize} needs at least {C} positions, got {len(pos)}")
    kk = min(k, len(pos) - 1)
    _, nbr = cKDTree(pos).query(pos, k=kk + 1)
    nbr = nbr[:, 1:]  # drop self
    groups = np.empty((len(pos), C), dtype=np.int64)
    groups[:, 0] = np.arange(len(pos))
    for i in range(len(pos)):
        cand = nbr[i]
        off = np.abs(pos[cand] - pos[i]).max(axis=1)
        near = cand[off < N / 2]
        if len(near) < C - 1:
            raise ConfigError(
                f"gridsize {gridsize}: position {i} has only {len(near)} of its K = {kk} nearest "
                f"neighbours within N/2 = {N / 2} px; the scan is too sparse to group"
            )
        groups[i, 1:] = rng.choice(near, size=C - 1, replace=False)
    return groups


def group_offsets(positions: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Offsets (n_groups, C, 2) of each member from its group's seed position, in pixels."""
    pos = np.asarray(positions, dtype=np.float64)
    return pos[groups] - pos[groups[:, :1]]
