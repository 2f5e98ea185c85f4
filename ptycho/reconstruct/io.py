"""Reconstruction file (HDF5), written by every arm and read by the evaluation.

/object  (H, W) complex64  the reconstructed object on the ground-truth object grid (0 where
                           no pattern contributed)
/weight  (H, W) float32    the stitching weight map (sum over patches of |P|^2 at each pixel);
                           the iterative arm stores its probe illumination map here
root attributes: arm, gridsize, dose, overlap_view, n_patterns, wall_time_s, source (test
dataset path) and info (JSON: arm-specific details, e.g. iterations and cost history).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ptycho.data.io import atomic_path
from ptycho.errors import DatasetError


@dataclass
class Reconstruction:
    object: np.ndarray
    weight: np.ndarray
    arm: str
    gridsize: int
    dose: float
    overlap_view: str
    n_patterns: int
    wall_time_s: float
    source: str
    info: dict = field(default_factory=dict)


def write_reconstruction(path, rec: Reconstruction) -> None:
    obj = np.asarray(rec.object)
    w = np.asarray(rec.weight)
    if obj.ndim != 2 or w.shape != obj.shape:
        raise DatasetError(f"{path}: object {obj.shape} and weight {w.shape} must be equal 2-D shapes")
    if not np.all(np.isfinite(obj)):
        raise DatasetError(f"{path}: reconstruction contains NaN or inf")
    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("object", data=obj.astype(np.complex64), track_times=False)
        f.create_dataset("weight", data=w.astype(np.float32), track_times=False)
        f.attrs["arm"] = rec.arm
        f.attrs["gridsize"] = int(rec.gridsize)
        f.attrs["dose"] = float(rec.dose)
        f.attrs["overlap_view"] = rec.overlap_view
        f.attrs["n_patterns"] = int(rec.n_patterns)
        f.attrs["wall_time_s"] = float(rec.wall_time_s)
        f.attrs["source"] = str(rec.source)
        f.attrs["info"] = json.dumps(rec.info, sort_keys=True, default=float)


def read_reconstruction(path) -> Reconstruction:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: reconstruction file not found")
    try:
        with h5py.File(path, "r") as f:
            for key in ("object", "weight"):
                if key not in f:
                    raise DatasetError(f"{path}: missing dataset '/{key}'")
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            return Reconstruction(
                object=f["object"][()], weight=f["weight"][()], arm=str(a["arm"]),
                gridsize=int(a["gridsize"]), dose=float(a["dose"]),
                overlap_view=str(a["overlap_view"]), n_patterns=int(a["n_patterns"]),
                wall_time_s=float(a["wall_time_s"]), source=str(a["source"]),
                info=json.loads(a.get("info", "{}")),
            )
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read reconstruction ({type(exc).__name__}: {exc})") from exc
