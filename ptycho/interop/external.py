"""A study's external data: every split a study names under ``data: cells`` opened by its format
(this project's HDF5, a PtychoPINN NPZ or a ptychodus product + diffraction pair), checked before
any job (:func:`check_external`) and written into one cell's train and test dataset files
(:func:`import_cell`).

Every reader returns a :class:`ptycho.data.source.SplitSource` (:mod:`ptycho.data.source`: the
split contract, its checks and its writer); the readers of other programs' formats are
:mod:`ptycho.interop.npz` and :mod:`ptycho.interop.ptychodus` (the latter needs the ``interop``
extra).
"""

from __future__ import annotations

import numpy as np

from ptycho.config import ExternalFile, StudyConfig, dose_label
from ptycho.data.dataset import DatasetMeta
from ptycho.data.source import SplitSource, check_split, open_hdf5, write_split
from ptycho.errors import ConfigError, DatasetError

INTEROP_HINT = 'pip install -e ".[interop]"'


def open_split(ext: ExternalFile) -> SplitSource:
    """Open one external split by its ``format``."""
    if ext.format == "hdf5":
        return open_hdf5(ext.path)
    if ext.format == "npz":
        from ptycho.interop.npz import open_npz

        return open_npz(ext.path)
    if ext.format == "ptychodus":
        try:
            from ptycho.interop.ptychodus import open_ptychodus
        except ImportError as exc:
            raise DatasetError(f"{ext.product}: reading ptychodus files needs ptychodus ({exc}); "
                               f"install it with: {INTEROP_HINT}") from exc
        return open_ptychodus(ext.product, ext.diffraction)
    raise ConfigError(f"unknown external format '{ext.format}'")


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


__all__ = ["INTEROP_HINT", "check_external", "import_cell", "open_split"]
