"""Seeded random streams. Every stream is derived from a config seed and stable labels, so the same
config gives the same numbers bit for bit, independent of job order."""

from __future__ import annotations

import zlib

import numpy as np

from ptycho.errors import ConfigError


def _label_key(label: str | float) -> int:
    return zlib.crc32(str(label).encode()) & 0xFFFFFFFF


def rng_for(seed: int, *labels: str | float) -> np.random.Generator:
    """A Generator seeded by ``seed`` and a tuple of stable labels (e.g. 'noise', '1e3', 'dense')."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(_label_key(x) for x in labels))
    return np.random.Generator(np.random.PCG64(ss))


def int_seed(seed: int, *labels: str | float) -> int:
    """A 31-bit integer seed for frameworks that take an int (TensorFlow, PyTorch)."""
    return int(rng_for(seed, *labels).integers(0, 2**31 - 1))


def replicate_labels(replicate: int) -> tuple[str, ...]:
    """Extra stream labels of replicate ``k``: none for k = 0, so replicate 0 draws exactly the
    streams of a study without replicates (same datasets, groups and seeds bit for bit), and
    ``('replicate', k)`` for k >= 1."""
    k = int(replicate)
    if k < 0:
        raise ConfigError(f"replicate must be an integer >= 0, got {replicate}")
    return () if k == 0 else ("replicate", str(k))
