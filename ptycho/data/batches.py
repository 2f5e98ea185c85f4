"""Streaming network inputs: batches read from the HDF5 file as the fitting loop (training,
adaptation) or inference asks for them, and the checks and normalisation of the counts.

Only one batch of patterns is in memory at a time (``Dataset.read``); the whole dataset is never
materialised, on the host or on the GPU. Shuffling is seeded: every epoch draws the next
permutation from one ``numpy`` Generator, so a run is reproducible from the config seed.

An item is one training example: for the PINN a group (its C = g^2 member indices and their offsets
from the seed, g = 1 being single patterns), for the baseline a single pattern and its
ground-truth patch. There is one group per scan position; an epoch of a g = 2 model draws a fresh
seeded 1/C of them, so every arm sees about as many diffraction patterns per epoch (same compute).
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.data.dataset import Dataset
from ptycho.data.grouping import ItemTable
from ptycho.errors import DatasetError
from ptycho.physics.forward import extract_patches


def count_statistics(ds: Dataset, chunk: int = 256) -> dict:
    """Stream the counts once: check they are finite and >= 0, and return their mean per pixel.

    Raises DatasetError naming the file and the first bad pattern.
    """
    total = 0.0
    for idx, counts in ds.iter_batches(chunk):
        bad = ~np.isfinite(counts)
        if bad.any():
            k = int(idx[np.flatnonzero(bad.reshape(len(counts), -1).any(axis=1))[0]])
            raise DatasetError(f"{ds.path}: '/diffraction' contains NaN or inf counts (pattern {k})")
        if (counts < 0).any():
            k = int(idx[np.flatnonzero((counts < 0).reshape(len(counts), -1).any(axis=1))[0]])
            raise DatasetError(f"{ds.path}: '/diffraction' contains negative counts (pattern {k})")
        total += float(counts.sum(dtype=np.float64))
    mean = total / max(ds.n * ds.N * ds.N, 1)
    return {"mean_counts_per_pixel": mean, "mean_counts_per_pattern": mean * ds.N * ds.N}


def input_norm(mean_counts_per_pixel: float, path) -> float:
    """The one input normalisation: sqrt(counts) / norm with norm = sqrt(mean counts per pixel),
    so the network input has unit root-mean-square over the training split at every dose."""
    if not mean_counts_per_pixel > 0:
        raise DatasetError(f"{path}: every count is zero; nothing to train on")
    return math.sqrt(mean_counts_per_pixel)


def split_validation(n_items: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of item indices into (train, validation); both non-empty when n >= 2."""
    if n_items < 2:
        raise DatasetError(f"need at least 2 training examples to hold out a validation subset, got {n_items}")
    n_val = min(max(1, round(fraction * n_items)), n_items - 1)
    perm = rng.permutation(n_items)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class BatchSource:
    """Python generator of (inputs, targets) batches over a subset of items, read lazily.

    kind ``pinn``: inputs {'counts': (b, N, N, C)[, 'offsets': (b, C, 2)]}, targets the counts.
    kind ``baseline``: inputs counts (b, N, N, 1), targets (b, N, N, 2) ground-truth amplitude and
    phase patches cut from the object with ``extract_patches`` at the pattern positions.
    """

    def __init__(self, ds: Dataset, table: ItemTable, subset: np.ndarray, batch_size: int,
                 kind: str, rng: np.random.Generator | None = None,
                 obj: np.ndarray | None = None, positions: np.ndarray | None = None,
                 per_epoch: int | None = None):
        if kind not in ("pinn", "baseline"):
            raise ValueError(f"unknown batch kind '{kind}'")
        if kind == "baseline" and (obj is None or positions is None):
            raise DatasetError(f"{ds.path}: the baseline needs the ground-truth object and positions")
        self.ds, self.table, self.kind = ds, table, kind
        self.subset = np.asarray(subset, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.rng = rng
        self.obj, self.positions = obj, positions
        self.N = ds.N
        # items drawn per epoch (a fresh seeded sample each epoch); all of them when None
        self.per_epoch = len(self.subset) if per_epoch is None else int(per_epoch)
        if not 1 <= self.per_epoch <= len(self.subset):
            raise ValueError(f"per_epoch must lie in [1, {len(self.subset)}], got {per_epoch}")
        if self.per_epoch < len(self.subset) and rng is None:
            raise ValueError("sampling a subset of items per epoch needs a seeded generator")

    def __len__(self) -> int:
        return math.ceil(self.per_epoch / self.batch_size)

    def batch(self, items: np.ndarray):
        N, C = self.N, self.table.C
        members = self.table.members[items]
        counts = self.ds.read(members.ravel()).reshape(len(items), C, N, N).transpose(0, 2, 3, 1)
        if self.kind == "baseline":
            patches = extract_patches(self.obj, self.positions[members[:, 0]], N)
            target = np.stack([np.abs(patches), np.angle(patches)], axis=-1).astype(np.float32)
            return counts, target
        x = {"counts": counts}
        if self.table.offsets is not None:
            x["offsets"] = self.table.offsets[items].astype(np.float32)
        return x, counts

    def __call__(self):
        order = self.subset if self.rng is None else self.rng.permutation(self.subset)
        order = order[: self.per_epoch]
        for s in range(0, len(order), self.batch_size):
            yield self.batch(order[s : s + self.batch_size])
