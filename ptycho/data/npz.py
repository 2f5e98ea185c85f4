"""NPZ import/export with the PtychoPINN keys: ``diffraction`` (amplitude, sqrt of counts),
``xcoords``, ``ycoords``, ``probeGuess``, ``objectGuess``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho.data.dataset import Dataset, DatasetMeta, DatasetWriter
from ptycho.data.io import atomic_path
from ptycho.errors import DatasetError

NPZ_KEYS = ("diffraction", "xcoords", "ycoords", "probeGuess", "objectGuess")


def export_npz(dataset_path, npz_path) -> None:
    """Write a dataset file as a PtychoPINN NPZ (the whole file is read: meant for small data)."""
    with Dataset(dataset_path) as ds:
        arrays = dict(
            diffraction=np.sqrt(ds.read()).astype(np.float32),
            xcoords=ds.positions[:, 1].copy(),
            ycoords=ds.positions[:, 0].copy(),
            probeGuess=ds.probe,
            objectGuess=ds.object,
        )
    with atomic_path(npz_path, ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def import_npz(npz_path, dataset_path, dose: float, split: str = "test", seed: int = 0) -> None:
    """Convert a PtychoPINN NPZ into a dataset file (amplitudes squared back to counts)."""
    npz_path = Path(npz_path)
    if not npz_path.is_file():
        raise DatasetError(f"{npz_path}: NPZ file not found")
    with np.load(npz_path) as z:
        missing = [k for k in NPZ_KEYS if k not in z]
        if missing:
            raise DatasetError(f"{npz_path}: missing keys {missing}, expected {list(NPZ_KEYS)}")
        amp = np.asarray(z["diffraction"], dtype=np.float64)
        pos = np.stack([z["ycoords"], z["xcoords"]], axis=1).astype(np.float64)
        probe, obj = z["probeGuess"], z["objectGuess"]
    if amp.ndim != 3 or amp.shape[1:] != probe.shape:
        raise DatasetError(f"{npz_path}: diffraction shape {amp.shape} does not match probe {probe.shape}")
    meta = DatasetMeta(dose=float(dose), overlap_target=float("nan"), overlap_measured=float("nan"),
                       overlap_area=float("nan"), probe_diameter=float("nan"), split=split,
                       seed=int(seed), config={"imported_from": str(npz_path)})
    with DatasetWriter(dataset_path, len(amp), pos, probe, obj, meta) as w:
        w.write((amp**2).astype(np.float32))
