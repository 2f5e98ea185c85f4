"""Spatially separated train/test split along y.

A patch's footprint is its full N x N extent (plus one pixel for a fractional position). Train
patches lie wholly above the split row, test patches wholly at or below it; straddling positions
are dropped, so no object pixel is covered by both a train and a test patch.
"""

from __future__ import annotations

import numpy as np

from ptycho.errors import ConfigError
from ptycho.physics.forward import patch_footprint


def split_row(positions: np.ndarray, train_fraction: float) -> int:
    """Object row where the split falls: ``train_fraction`` of the way down the scanned rows."""
    y = np.asarray(positions)[:, 0]
    return int(np.round(y.min() + train_fraction * (y.max() - y.min())))


def split_masks(positions: np.ndarray, N: int, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test) for patch centres ``positions`` and split row ``row``."""
    lo, hi = patch_footprint(positions, N)
    train = hi[:, 0] < row
    test = lo[:, 0] >= row
    return train, test


def coverage_mask(object_shape: tuple[int, int], positions: np.ndarray, N: int) -> np.ndarray:
    """Boolean (H, W) map of object pixels inside at least one patch footprint."""
    cov = np.zeros(object_shape, dtype=bool)
    lo, hi = patch_footprint(positions, N)
    for (y0, x0), (y1, x1) in zip(lo, hi):
        cov[y0 : y1 + 1, x0 : x1 + 1] = True
    return cov


def shared_pixels(object_shape, train_positions, test_positions, N: int) -> int:
    """Number of object pixels covered by both a train and a test patch (must be 0)."""
    a = coverage_mask(object_shape, train_positions, N)
    b = coverage_mask(object_shape, test_positions, N)
    return int(np.count_nonzero(a & b))


def split_positions(positions: np.ndarray, N: int, train_fraction: float):
    """(train_positions, test_positions, row); errors if either side is empty."""
    row = split_row(positions, train_fraction)
    tr, te = split_masks(positions, N, row)
    if tr.sum() < 2 or te.sum() < 2:
        raise ConfigError(
            f"split: only {int(tr.sum())} train and {int(te.sum())} test positions survive the y split "
            f"at row {row} (N = {N}); use a taller object or a higher overlap"
        )
    return positions[tr], positions[te], row


def _half_extras(ds, idx) -> dict:
    """The further arrays of a half file: the nominal probe modes, the true probe and the half's
    true positions, where the full test file has them."""
    extras = {}
    modes = ds.probe_modes
    if len(modes) > 1:
        extras["probe_modes"] = modes
    if ds.has_model_errors:
        extras["true_probe"] = ds.true_probe
        extras["true_positions"] = ds.true_positions[idx]
    return extras


def interleaved_halves(test_path, half1_path, half2_path) -> tuple[int, int]:
    """Write the even and the odd positions (scan order) of a test split as two dataset files,
    each a complete test split of its own (same probe, object grid and attributes; the config
    records ``half``: 1 or 2). Counts are copied in batches. Returns the two pattern counts.

    A half gets the same inputs its arms get on the full scan: the nominal probe modes
    (``/probe_modes``) and, in a cell with model errors, the true probe, the half's subset of the
    true positions and the cell's error record (attributes ``error_level``, ``probe_error``, ...),
    so a half of an error cell is an error cell and its model errors are measured as on the
    full scan."""
    from ptycho.data.dataset import Dataset, DatasetWriter
    from ptycho.errors import DatasetError

    with Dataset(test_path, require_object=False) as ds:
        if ds.n < 4:
            raise DatasetError(f"{test_path}: {ds.n} patterns cannot be split into two half "
                               "scans (need >= 4)")
        cfg = ds.config
        obj = ds.object if ds.has_object else None
        cfg.setdefault("object_size", list(ds.object_shape))
        counts = []
        for h, (out, idx) in enumerate(((half1_path, np.arange(0, ds.n, 2)),
                                        (half2_path, np.arange(1, ds.n, 2))), start=1):
            meta = ds.meta(config={**cfg, "half": h}, errors=ds.errors)
            with DatasetWriter(out, len(idx), ds.positions[idx], ds.probe, obj, meta,
                               extras=_half_extras(ds, idx)) as w:
                for _, block in ds.iter_batches(256, idx):
                    w.write(block)
            counts.append(len(idx))
    return counts[0], counts[1]
