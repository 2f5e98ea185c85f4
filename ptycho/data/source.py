"""A split of a dataset from outside the simulator, as this project reads it: :class:`SplitSource`
(positions, probe, optional object, counts read lazily in batches), the checks that can be made
without reading the patterns (:func:`check_split`), the reader of this project's own HDF5 split
(:func:`open_hdf5`) and the writer of a split into the dataset contract of
:mod:`ptycho.data.dataset` (:func:`write_split`).

Positions are patch centres (y, x) in object pixels in this project's convention (patch pixel
(i, j) of a centre (cy, cx) sits at object pixel (cy - N/2 + i, cx - N/2 + j)), counts are photons
per pixel, read in batches so memory stays bounded. The readers of other programs' formats
(PtychoPINN NPZ, ptychodus) and the import of a study's external cells live in
:mod:`ptycho.interop`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ptycho.data.dataset import Dataset, DatasetMeta, DatasetWriter
from ptycho.errors import DatasetError
from ptycho.physics.forward import check_positions, patch_footprint


@dataclass
class SplitSource:
    """One split of an external dataset, counts read lazily.

    ``iter_counts(size)`` yields the counts (photons, float32) in order, ``size`` patterns at a
    time (one open file, sequential reads); ``dose`` is the incident
    photons per exposure recorded in the file (None when it records none); ``object`` the
    ground truth (None when absent) and ``object_shape`` the object grid either way.
    """

    where: str
    format: str
    positions: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None
    object_shape: tuple[int, int]
    n: int
    N: int
    dose: float | None
    iter_counts: Callable[[int], Iterator[np.ndarray]]
    info: dict = field(default_factory=dict)
    probe_modes: np.ndarray | None = None
    """All incoherent probe modes (M, N, N), M >= 2, when the file has several (``probe`` is the
    first); None: one mode."""

    def batches(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start index, counts) blocks of at most ``size`` patterns, in order."""
        a = 0
        for block in self.iter_counts(max(1, int(size))):
            yield a, block
            a += len(block)
        if a != self.n:
            raise DatasetError(f"{self.where}: read {a} diffraction patterns, expected {self.n}")


def object_shape_from_positions(positions: np.ndarray, N: int) -> tuple[int, int]:
    """The smallest object grid holding every patch footprint (for files without an object)."""
    _, hi = patch_footprint(positions, N)
    return int(hi[:, 0].max()) + 1, int(hi[:, 1].max()) + 1


def open_hdf5(path) -> SplitSource:
    """A split from this project's dataset file (ground truth optional)."""
    with Dataset(path, require_object=False) as ds:
        obj = ds.object if ds.has_object else None
        shape = tuple(int(s) for s in (obj.shape if obj is not None else ds.object_shape))
        modes = ds.probe_modes
        src = SplitSource(where=str(path), format="hdf5", positions=ds.positions, probe=ds.probe,
                          object=obj, object_shape=shape, n=ds.n, N=ds.N, dose=ds.dose,
                          iter_counts=lambda size: _iter_dataset(path, size),
                          probe_modes=modes if len(modes) > 1 else None)
    return src


def _iter_dataset(path, size: int) -> Iterator[np.ndarray]:
    with Dataset(path, require_object=False) as ds:
        for _, block in ds.iter_batches(size):
            yield block


def check_split(src: SplitSource, N: int | None = None, need_object: bool = False) -> None:
    """Raise ``DatasetError`` naming the file when the split cannot be used: no patterns, a probe
    that is not (N, N) complex and finite, non-finite positions, a patch outside the object, a
    missing ground truth when ``need_object``, or another N than the study's."""
    w = src.where
    if src.n < 1:
        raise DatasetError(f"{w}: no diffraction patterns")
    pos = np.asarray(src.positions)
    if pos.shape != (src.n, 2):
        raise DatasetError(f"{w}: {len(pos)} positions for {src.n} diffraction patterns "
                           "(pattern counts must match)")
    if not np.all(np.isfinite(pos)):
        raise DatasetError(f"{w}: positions contain NaN or inf")
    if src.probe.shape != (src.N, src.N):
        raise DatasetError(f"{w}: probe has shape {src.probe.shape}, but the patterns are "
                           f"{src.N} x {src.N}")
    if not np.all(np.isfinite(src.probe)) or float(np.sum(np.abs(src.probe) ** 2)) <= 0:
        raise DatasetError(f"{w}: probe is zero everywhere or not finite")
    if src.probe_modes is not None:
        m = np.asarray(src.probe_modes)
        if m.ndim != 3 or m.shape[1:] != (src.N, src.N) or len(m) < 2:
            raise DatasetError(f"{w}: probe modes have shape {m.shape}, expected (M >= 2, "
                               f"{src.N}, {src.N})")
        if not np.all(np.isfinite(m)) or not np.array_equal(m[0], src.probe):
            raise DatasetError(f"{w}: probe modes are not finite or their first mode is not the "
                               "probe")
    if N is not None and src.N != N:
        raise DatasetError(f"{w}: patterns are {src.N} x {src.N}, but the study's scale has "
                           f"N = {N}")
    if need_object and src.object is None:
        raise DatasetError(f"{w}: no ground-truth object (data/ground_truth is true)")
    if src.object is not None and not np.all(np.isfinite(src.object)):
        raise DatasetError(f"{w}: object contains NaN or inf")
    try:
        check_positions(src.object_shape, pos, src.N)
    except DatasetError as exc:
        raise DatasetError(f"{w}: {exc} (positions outside the object)") from exc


def write_split(src: SplitSource, path, meta: DatasetMeta, keep_object: bool,
                chunk: int = 256) -> dict:
    """Stream ``src`` into a dataset file at ``path`` (written atomically); returns statistics."""
    total, zeros = 0.0, 0
    obj = src.object if keep_object else None
    extras = None
    if src.probe_modes is not None and len(src.probe_modes) > 1:
        extras = {"probe_modes": np.asarray(src.probe_modes, dtype=np.complex64)}
    with DatasetWriter(path, src.n, src.positions, src.probe, obj, meta, chunk=chunk,
                       extras=extras) as w:
        for a, counts in src.batches(chunk):
            if not np.all(np.isfinite(counts)) or float(counts.min(initial=0.0)) < 0:
                raise DatasetError(f"{src.where}: patterns {a}..{a + len(counts) - 1} hold NaN, "
                                   "inf or negative counts")
            w.write(counts)
            total += float(counts.sum(dtype=np.float64))
            zeros += int(np.count_nonzero(counts == 0))
    return {"n_patterns": src.n, "mean_photons_per_pattern": total / src.n,
            "fraction_zero_pixels": zeros / (src.n * src.N * src.N)}


__all__ = ["SplitSource", "check_split", "object_shape_from_positions", "open_hdf5",
           "write_split"]
