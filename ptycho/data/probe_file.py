"""The refined-probe file and a dataset told another nominal probe (``data: probe_source:
train_refined``, docs/own-data.md).

Refined-probe file (HDF5, one per cell, written by ``ptycho.reconstruct.probe_refine``):

/probe        (M, N, N) complex64  the refined probe modes, in the dataset's units (the given
                                   probe's total power, its global phase)
/given_probe  (K, N, N) complex64  the probe the refinement started from (the train file's)
root attributes: probe_sha256, given_probe_sha256 (SHA-256 of the C-ordered complex64 bytes),
train_file, train_sha256 (of the train file's bytes: the only data the refinement read),
settings (JSON: the LSQML settings), info (JSON: cost history, change from the given probe and,
on simulated data, the relative probe error before and after), format ("ptycho-dose refined
probe").

A dataset with the refined probe (:func:`apply_probe`) is the given dataset file with ``/probe``
(and ``/probe_modes`` for several modes) replaced, the given probe kept as ``/given_probe`` (the
given modes as ``/given_probe_modes``), and the attributes ``probe_source`` ("train_refined"),
``probe_sha256``, ``given_probe_sha256``, ``refined_probe_file`` and, on simulated data with the
true probe, ``given_probe_error`` and ``refined_probe_error``. Counts, positions, object and every
other key are copied unchanged, so every arm reads the refined probe as its nominal probe.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ptycho.data.dataset import Dataset
from ptycho.data.io import atomic_path
from ptycho.errors import DatasetError

FORMAT = "ptycho-dose refined probe"
PROBE_SOURCE_REFINED = "train_refined"


def probe_sha256(modes) -> str:
    """SHA-256 of probe modes as C-ordered complex64 (M, N, N) bytes ((N, N): one mode)."""
    a = np.asarray(modes, dtype=np.complex64)
    a = a[None] if a.ndim == 2 else a
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def file_sha256(path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def as_modes(probe, where: str = "probe") -> np.ndarray:
    """Probe (N, N), modes (M, N, N) or a ptychodus-style (1, M, N, N) array as complex64 modes
    (M, N, N); DatasetError naming ``where`` for another shape (several coherent / OPR modes) or
    non-finite values."""
    a = np.asarray(probe)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != a.shape[-2] or a.shape[0] < 1:
        raise DatasetError(f"{where}: probe has shape {np.shape(probe)}; expected (N, N), "
                           "(M, N, N) incoherent modes or (1, M, N, N)")
    if not np.iscomplexobj(a):
        raise DatasetError(f"{where}: probe has dtype {a.dtype}, expected complex")
    if not np.all(np.isfinite(a)) or float(np.sum(np.abs(a) ** 2)) <= 0:
        raise DatasetError(f"{where}: probe is zero everywhere or not finite")
    return np.ascontiguousarray(a, dtype=np.complex64)


@dataclass(frozen=True)
class RefinedProbe:
    """A refined-probe file's content."""

    probe: np.ndarray
    """(M, N, N) complex64 refined modes."""
    given_probe: np.ndarray
    """(K, N, N) complex64 modes the refinement started from."""
    train_file: str
    train_sha256: str
    settings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return probe_sha256(self.probe)

    @property
    def given_sha256(self) -> str:
        return probe_sha256(self.given_probe)


def write_probe_file(path, refined: RefinedProbe) -> None:
    """Write a refined-probe file atomically (see the module docstring)."""
    probe = as_modes(refined.probe, f"{path}: refined probe")
    given = as_modes(refined.given_probe, f"{path}: given probe")
    if probe.shape[-1] != given.shape[-1]:
        raise DatasetError(f"{path}: refined probe {probe.shape} and given probe {given.shape} "
                           "differ in N")
    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("probe", data=probe, track_times=False)
        f.create_dataset("given_probe", data=given, track_times=False)
        f.attrs["format"] = FORMAT
        f.attrs["probe_sha256"] = probe_sha256(probe)
        f.attrs["given_probe_sha256"] = probe_sha256(given)
        f.attrs["train_file"] = str(refined.train_file)
        f.attrs["train_sha256"] = str(refined.train_sha256)
        f.attrs["settings"] = json.dumps(refined.settings, sort_keys=True)
        f.attrs["info"] = json.dumps(refined.info, sort_keys=True, default=float)


def read_probe_file(path) -> RefinedProbe:
    """Read a refined-probe file; DatasetError when it is missing, incomplete or its probe does not
    match its recorded hash."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: refined-probe file not found")
    try:
        with h5py.File(path, "r") as f:
            for key in ("probe", "given_probe"):
                if key not in f:
                    raise DatasetError(f"{path}: missing dataset '/{key}'")
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            probe, given = f["probe"][()], f["given_probe"][()]
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable refined-probe file ({exc})") from exc
    if a.get("format") != FORMAT:
        raise DatasetError(f"{path}: attribute format is {a.get('format')!r}, expected {FORMAT!r}")
    out = RefinedProbe(probe=as_modes(probe, str(path)), given_probe=as_modes(given, str(path)),
                       train_file=str(a.get("train_file", "")),
                       train_sha256=str(a.get("train_sha256", "")),
                       settings=json.loads(a.get("settings", "{}")),
                       info=json.loads(a.get("info", "{}")))
    if out.sha256 != a.get("probe_sha256"):
        raise DatasetError(f"{path}: '/probe' does not match its recorded probe_sha256")
    return out


def apply_probe(dataset_path, probe_path, out_path) -> dict:
    """Write ``out_path``: the dataset ``dataset_path`` with the refined probe of ``probe_path``
    as its nominal probe (see the module docstring). The refinement must have started from this
    dataset's probe (same hash). Returns what was recorded (hashes, probe errors)."""
    from ptycho.physics.errors import relative_probe_error

    refined = read_probe_file(probe_path)
    with Dataset(dataset_path, require_object=False) as ds:
        given = np.ascontiguousarray(ds.probe_modes, dtype=np.complex64)
        N = ds.N
    with h5py.File(dataset_path, "r") as f:  # the true probe: only a simulated cell with errors
        true = f["true_probe"][()] if "true_probe" in f else None
    if probe_sha256(given) != refined.given_sha256:
        raise DatasetError(f"{probe_path}: the refinement started from another probe than the "
                           f"one of {dataset_path} (given_probe_sha256 differs)")
    if refined.probe.shape[-1] != N:
        raise DatasetError(f"{probe_path}: refined probe is {refined.probe.shape[-1]} px, the "
                           f"patterns of {dataset_path} are {N} px")
    modes = refined.probe
    record = {"probe_source": PROBE_SOURCE_REFINED, "probe_sha256": refined.sha256,
              "given_probe_sha256": refined.given_sha256,
              "refined_probe_file": str(probe_path)}
    if true is not None:
        record["given_probe_error"] = relative_probe_error(given if len(given) > 1 else given[0],
                                                           true)
        record["refined_probe_error"] = relative_probe_error(modes if len(modes) > 1 else modes[0],
                                                             true)
    replaced = {"probe", "probe_modes"}
    with (atomic_path(out_path, ".h5") as tmp, h5py.File(dataset_path, "r") as src,
          h5py.File(tmp, "w") as dst):
        for name in src:
            if name not in replaced:
                src.copy(src[name], dst, name)
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        kw = {"track_times": False}
        dst.create_dataset("probe", data=modes[0], **kw)
        if len(modes) > 1:
            dst.create_dataset("probe_modes", data=modes, **kw)
        dst.create_dataset("given_probe", data=given[0], **kw)
        if len(given) > 1:
            dst.create_dataset("given_probe_modes", data=given, **kw)
        for k, v in record.items():
            dst.attrs[k] = v
    with Dataset(out_path, require_object=False):  # the written file passes the reader's checks
        pass
    return record


__all__ = ["FORMAT", "PROBE_SOURCE_REFINED", "RefinedProbe", "apply_probe", "as_modes",
           "file_sha256", "probe_sha256", "read_probe_file", "write_probe_file"]
