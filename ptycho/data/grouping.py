"""K-nearest-neighbour grouping for gridsize g (groups of C = g^2 positions).

Each scan position seeds one group: the seed plus C - 1 neighbours drawn (seeded) from those of its
K nearest neighbours whose offset from the seed is below N/2 along y and x, so the patches of a
group overlap and fit on a 2N canvas. Where a scan is too sparse for that (fewer than C - 1 such
neighbours), the missing members repeat the seed (offset 0): the group degrades towards single
patterns instead of failing, and the number of such groups is logged.

The grouping of a split is seeded by its cell (:func:`cell_labels`, :func:`grouping_rng`), so
training, test-time adaptation and inference draw the same groups from the same seeds
(:func:`group_table`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ptycho.config import dose_label
from ptycho.data.dataset import Dataset
from ptycho.errors import ConfigError
from ptycho.rng import replicate_labels, rng_for

log = logging.getLogger(__name__)


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
    padded = 0
    for i in range(len(pos)):
        cand = nbr[i]
        off = np.abs(pos[cand] - pos[i]).max(axis=1)
        near = cand[off < N / 2]
        if len(near) >= C - 1:
            groups[i, 1:] = rng.choice(near, size=C - 1, replace=False)
        else:
            padded += 1
            groups[i, 1:] = np.concatenate([near, np.full(C - 1 - len(near), i)])
    if padded:
        log.warning("gridsize %d: %d of %d positions have fewer than %d neighbours within N/2 = %g px "
                    "(of their K = %d nearest); their groups repeat the seed", gridsize, padded,
                    len(pos), C - 1, N / 2, kk)
    return groups


def group_offsets(positions: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Offsets (n_groups, C, 2) of each member from its group's seed position, in pixels."""
    pos = np.asarray(positions, dtype=np.float64)
    return pos[groups] - pos[groups[:, :1]]


@dataclass
class ItemTable:
    """The training examples of an arm: ``members`` (n_items, C) pattern indices and, for g >= 2,
    ``offsets`` (n_items, C, 2) pixels of each member from its group's seed."""

    members: np.ndarray
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.members)

    @property
    def C(self) -> int:
        return int(self.members.shape[1])


def cell_labels(ds: Dataset) -> tuple[str, str]:
    """(dose label, overlap view) of a dataset, the labels that seed a cell's random streams."""
    try:
        view = str(ds.config.get("overlap_view", "none"))
    except (ValueError, TypeError, KeyError):  # a config that is not JSON: still a usable file
        view = "none"
    return dose_label(ds.dose), view


def group_table(positions: np.ndarray, gridsize: int, neighbours: int, N: int,
                rng: np.random.Generator):
    """Groups (one per position, seeded by it) and their offsets; g = 1 gives single patterns."""
    groups = make_groups(positions, gridsize, neighbours, N, rng)
    offsets = group_offsets(positions, groups) if gridsize > 1 else None
    return ItemTable(groups, offsets)


def grouping_rng(study_seed: int, split: str, dose_lbl: str, view: str,
                 replicate: int = 0) -> np.random.Generator:
    return rng_for(study_seed, "groups", split, dose_lbl, view, *replicate_labels(replicate))
