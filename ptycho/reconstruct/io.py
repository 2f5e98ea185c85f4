"""Reconstruction file (HDF5), written by every arm and read by the evaluation.

/object  (H, W) complex64  the reconstructed object on the ground-truth object grid (0 where
                           no pattern contributed)
/weight  (H, W) float32    the stitching weight map (sum over patches of |P|^2 at each pixel);
                           the iterative arm stores its probe illumination map here
root attributes: arm, gridsize, dose, overlap_view, n_patterns, wall_time_s, source (test
dataset path) and info (JSON: arm-specific details, e.g. iterations and cost history).

The solver arms (iterative, hybrid) also write their convergence snapshots, taken during the one
solve at the study's snapshot epochs (the last is the final epoch, equal to /object):
An arm that refines the probe or the positions (or solves with other probe modes than the
dataset's nominal probe) also stores what it ended with (absent otherwise), with SHA-256 hashes:
/probe      (M, N, N) complex64  final probe modes, in the dataset's units
/positions  (n, 2) float64       final test positions (y, x), our convention
attributes probe_sha256, positions_sha256 (of the C-ordered bytes).

/snapshots/epochs       (S,) int32       epochs completed (1-based)
/snapshots/wall_time_s  (S,) float64     cumulative wall time at each snapshot (s); the hybrid
                                         arm's includes its start network's inference time
/snapshots/objects      (S, H, W) complex64  the object at each snapshot, masked like /object
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ptycho.data.io import atomic_path
from ptycho.errors import DatasetError


@dataclass
class Snapshots:
    """Objects recorded during one iterative solve: ``epochs`` (S,) ascending, ``wall_time_s``
    (S,) cumulative seconds, ``objects`` (S, H, W) complex."""

    epochs: np.ndarray
    wall_time_s: np.ndarray
    objects: np.ndarray

    def __post_init__(self):
        self.epochs = np.asarray(self.epochs, dtype=np.int32).reshape(-1)
        self.wall_time_s = np.asarray(self.wall_time_s, dtype=np.float64).reshape(-1)
        self.objects = np.asarray(self.objects)
        S = self.epochs.size
        if (self.wall_time_s.size != S or self.objects.ndim != 3 or self.objects.shape[0] != S
                or S < 1):
            raise DatasetError(f"snapshots: {S} epochs, {self.wall_time_s.size} wall times and "
                               f"objects of shape {self.objects.shape} do not match")
        if np.any(np.diff(self.epochs) <= 0) or self.epochs[0] < 1:
            raise DatasetError(f"snapshots: epochs {self.epochs.tolist()} must be >= 1 and "
                               "strictly increasing")


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
    snapshots: Snapshots | None = None
    probe: np.ndarray | None = None
    """The arm's final probe modes (M, N, N) in the dataset's units, when it refined the probe or
    used other modes than the dataset's nominal probe (None: the nominal probe)."""
    positions: np.ndarray | None = None
    """The arm's final positions (n, 2) of the test split (our convention), when it refined them
    (None: the nominal positions)."""


def object_sha256(obj) -> str:
    """SHA-256 of an object as C-ordered complex64 bytes (how a start object is identified)."""
    a = np.ascontiguousarray(np.asarray(obj), dtype=np.complex64)
    return hashlib.sha256(a.tobytes()).hexdigest()


def fill_unlit(obj, weight) -> np.ndarray:
    """A reconstruction as a solver start: pixels no pattern reached (``weight`` <= 0, stored as
    0) become 1, like the flat start; complex64 (H, W)."""
    obj = np.asarray(obj)
    return np.where(np.asarray(weight) > 0, obj, 1).astype(np.complex64)


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
        if rec.probe is not None:
            pr = np.asarray(rec.probe, dtype=np.complex64)
            pr = pr[None] if pr.ndim == 2 else pr
            if pr.ndim != 3 or not np.all(np.isfinite(pr)):
                raise DatasetError(f"{path}: probe modes must be finite (M, N, N), got {pr.shape}")
            f.create_dataset("probe", data=pr, track_times=False)
            f.attrs["probe_sha256"] = hashlib.sha256(pr.tobytes()).hexdigest()
        if rec.positions is not None:
            pos = np.asarray(rec.positions, dtype=np.float64)
            if pos.shape != (int(rec.n_patterns), 2) or not np.all(np.isfinite(pos)):
                raise DatasetError(f"{path}: positions must be finite ({rec.n_patterns}, 2), got "
                                   f"{pos.shape}")
            f.create_dataset("positions", data=pos, track_times=False)
            f.attrs["positions_sha256"] = hashlib.sha256(pos.tobytes()).hexdigest()
        snap = rec.snapshots
        if snap is not None:
            if snap.objects.shape[1:] != obj.shape or not np.all(np.isfinite(snap.objects)):
                raise DatasetError(f"{path}: snapshots {snap.objects.shape} must be finite objects "
                                   f"of the reconstruction's shape {obj.shape}")
            g = f.create_group("snapshots")
            g.create_dataset("epochs", data=snap.epochs, track_times=False)
            g.create_dataset("wall_time_s", data=snap.wall_time_s, track_times=False)
            g.create_dataset("objects", data=snap.objects.astype(np.complex64),
                             chunks=(1,) + obj.shape, track_times=False)


REFINED_DATASETS = ("probe", "positions")


def refined_hashes(path) -> dict[str, tuple[str | None, str]]:
    """The refined inputs a reconstruction file stores: {"probe" | "positions": (the SHA-256 its
    attribute records, the SHA-256 of the stored array now)}; {} for an arm that refined nothing.
    The hash is that of the array's C-ordered bytes (complex64 probe, float64 positions), as
    :func:`write_reconstruction` records it."""
    path = Path(path)
    out = {}
    try:
        with h5py.File(path, "r") as f:
            for name, dtype in zip(REFINED_DATASETS, (np.complex64, np.float64), strict=True):
                if name not in f:
                    continue
                arr = np.ascontiguousarray(np.asarray(f[name][()], dtype=dtype))
                attr = f.attrs.get(f"{name}_sha256")
                attr = attr.decode() if isinstance(attr, bytes) else attr
                out[name] = (None if attr is None else str(attr),
                             hashlib.sha256(arr.tobytes()).hexdigest())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read reconstruction ({exc})") from exc
    return out


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
                snapshots=_read_snapshots(f, path),
                probe=f["probe"][()] if "probe" in f else None,
                positions=f["positions"][()] if "positions" in f else None,
            )
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read reconstruction ({type(exc).__name__}: {exc})") from exc


def _read_snapshots(f, path) -> Snapshots | None:
    if "snapshots" not in f:
        return None
    g = f["snapshots"]
    for key in ("epochs", "wall_time_s", "objects"):
        if key not in g:
            raise DatasetError(f"{path}: missing dataset '/snapshots/{key}'")
    try:
        return Snapshots(epochs=g["epochs"][()], wall_time_s=g["wall_time_s"][()],
                         objects=g["objects"][()])
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
