"""External datasets: one split read from this project's HDF5, a PtychoPINN NPZ or a ptychodus
product + diffraction pair, validated and written into the dataset contract of
:mod:`ptycho.data.dataset`.

Every reader returns a :class:`SplitSource`: positions are patch centres (y, x) in object pixels
in this project's convention (patch pixel (i, j) of a centre (cy, cx) sits at object pixel
(cy - N/2 + i, cx - N/2 + j)), counts are photons per pixel, read in batches so memory stays
bounded. :func:`check_split` validates what can be validated without reading the patterns (shapes,
dtypes, pattern counts, positions inside the object); :func:`check_external` runs it on every file
of a study, so the workflow stops before any job; :func:`import_cell` writes one cell's train and
test files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ptycho.config import ExternalFile, StudyConfig, dose_label
from ptycho.data.dataset import Dataset, DatasetMeta, DatasetWriter
from ptycho.errors import ConfigError, DatasetError
from ptycho.physics.forward import check_positions, patch_footprint

INTEROP_HINT = 'pip install -e ".[interop]"'


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
        src = SplitSource(where=str(path), format="hdf5", positions=ds.positions, probe=ds.probe,
                          object=obj, object_shape=shape, n=ds.n, N=ds.N, dose=ds.dose,
                          iter_counts=lambda size: _iter_dataset(path, size))
    return src


def _iter_dataset(path, size: int) -> Iterator[np.ndarray]:
    with Dataset(path, require_object=False) as ds:
        for _, block in ds.iter_batches(size):
            yield block


def open_split(ext: ExternalFile) -> SplitSource:
    """Open one external split by its ``format``."""
    if ext.format == "hdf5":
        return open_hdf5(ext.path)
    if ext.format == "npz":
        from ptycho.data.npz import open_npz

        return open_npz(ext.path)
    if ext.format == "ptychodus":
        try:
            from ptycho.interop.ptychodus import open_ptychodus
        except ImportError as exc:
            raise DatasetError(f"{ext.product}: reading ptychodus files needs ptychodus ({exc}); "
                               f"install it with: {INTEROP_HINT}") from exc
        return open_ptychodus(ext.product, ext.diffraction)
    raise ConfigError(f"unknown external format '{ext.format}'")


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


def check_external(study: StudyConfig) -> None:
    """Open and check every external file of the study (no pattern is read): raises
    ``DatasetError`` naming the file and ``ConfigError`` naming the study key. The patterns' N
    must be one of the study's scale sizes (each job checks its own scale)."""
    if not study.data.external:
        return
    sizes = sorted({s.N for s in study.scales.values()})
    for i, cell in enumerate(study.data.cells):
        label = f"{dose_label(cell.dose)}_{cell.overlap}"
        shapes = {}
        for split in ("train", "test"):
            src = open_split(getattr(cell, split))
            check_split(src, need_object=study.data.ground_truth)
            if src.N not in sizes:
                raise DatasetError(f"{src.where}: patterns are {src.N} x {src.N}, but the study's "
                                   f"scales have N = {sizes} (data/cells/{i}/{split})")
            _check_dose(src, cell.dose, f"data/cells/{i}")
            shapes[split] = (src.object_shape, src.N)
        if len(set(shapes.values())) > 1:
            raise DatasetError(f"cell {label}: train and test splits differ in object grid or N "
                               f"({shapes})")


def _check_dose(src: SplitSource, dose: float, where: str) -> None:
    if src.dose is not None and dose_label(src.dose) != dose_label(dose):
        raise DatasetError(f"{src.where}: the file records a dose of {src.dose:g} photons per "
                           f"exposure, but '{where}/dose' is {dose:g}")


def write_split(src: SplitSource, path, meta: DatasetMeta, keep_object: bool,
                chunk: int = 256) -> dict:
    """Stream ``src`` into a dataset file at ``path`` (written atomically); returns statistics."""
    total, zeros = 0.0, 0
    obj = src.object if keep_object else None
    with DatasetWriter(path, src.n, src.positions, src.probe, obj, meta, chunk=chunk) as w:
        for a, counts in src.batches(chunk):
            if not np.all(np.isfinite(counts)) or float(counts.min(initial=0.0)) < 0:
                raise DatasetError(f"{src.where}: patterns {a}..{a + len(counts) - 1} hold NaN, "
                                   "inf or negative counts")
            w.write(counts)
            total += float(counts.sum(dtype=np.float64))
            zeros += int(np.count_nonzero(counts == 0))
    return {"n_patterns": src.n, "mean_photons_per_pattern": total / src.n,
            "fraction_zero_pixels": zeros / (src.n * src.N * src.N)}


def import_cell(study: StudyConfig, scale_name: str, dose: str, overlap_view: str,
                train_path, test_path, replicate: int = 0) -> dict:
    """Write one cell's train and test dataset files from its external
    files; returns the cell summary (the keys of :func:`ptycho.data.generate.simulate_cell`'s).
    A measurement has one noise realisation: every ``replicate`` holds the same counts, and only
    the seeds drawn with the replicate label (grouping, validation split, training) differ."""
    from ptycho.physics.probe import energy_diameter
    from ptycho.physics.scan import mean_area_overlap, measured_overlap

    scale = study.scale(scale_name)
    cell = study.data.cell(dose, overlap_view)
    dose_value = study.dose(dose)
    gt = study.data.ground_truth
    splits = {"train": open_split(cell.train), "test": open_split(cell.test)}
    for src in splits.values():
        check_split(src, N=scale.N, need_object=gt)
        _check_dose(src, dose_value, f"data/cells ({dose}_{overlap_view})")
    test = splits["test"]
    d = energy_diameter(test.probe, 0.9)
    all_pos = np.concatenate([s.positions for s in splits.values()])
    f_target = study.overlap(overlap_view)
    f_area = mean_area_overlap(all_pos, d) if len(all_pos) > 1 else float("nan")
    summary = {"study": study.study, "scale": scale_name, "dose": dose_value,
               "dose_label": dose_label(dose_value), "overlap_view": overlap_view,
               "overlap_target": f_target,
               "overlap_measured": measured_overlap(all_pos, d) if len(all_pos) > 1 else f_target,
               "overlap_area": f_area, "probe_diameter_px": d, "N": test.N,
               "object_size": list(test.object_shape), "splits": {},
               "seed": study.seeds.simulation, "ground_truth": gt, "imported_from": {}}
    paths = {"train": train_path, "test": test_path}
    for split, src in splits.items():
        source = {"format": src.format, "file": src.where, **src.info}
        cfg = {"study": study.to_dict(), "scale": scale_name, "dose_label": dose_label(dose_value),
               "overlap_view": overlap_view, "object_size": list(src.object_shape),
               "imported_from": source, "ground_truth": gt}
        meta = DatasetMeta(dose=dose_value, overlap_target=f_target,
                           overlap_measured=(measured_overlap(src.positions, d) if src.n > 1
                                             else summary["overlap_measured"]),
                           overlap_area=f_area, probe_diameter=d, split=split,
                           seed=study.seeds.simulation, config=cfg, replicate=int(replicate))
        summary["splits"][split] = write_split(src, paths[split], meta, keep_object=gt,
                                               chunk=scale.chunk_size)
        summary["imported_from"][split] = source
    return summary


__all__ = ["SplitSource", "check_external", "check_split", "import_cell", "open_split",
           "write_split"]
