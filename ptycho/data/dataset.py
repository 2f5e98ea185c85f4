"""The HDF5 dataset file of docs/conventions.md ("Files"), one file per dose x overlap x split.

/diffraction (n, N, N) float32 counts, chunked by patterns
/positions   (n, 2) float64 patch centres (y, x) in object pixels
/probe       (N, N) complex64 the nominal probe (the one the arms are told)
/probe_modes (M, N, N) complex64, optional: the nominal probe's incoherent modes (M >= 2)
/true_probe, /true_positions  optional: the probe (N, N) or modes (M, N, N) and the positions
             that made the data, in a cell with model errors (/positions is then nominal)
/object      (H, W) complex64 ground truth (absent for external data without one: the grid is
             then the 'object_size' of the config attribute)
root attributes: dose, overlap_target, overlap_measured, overlap_area, probe_diameter, split, seed,
N, format_version, config (JSON); replicate (int, 0 when absent), fluence (mean incident photons
per object pixel over the split's lit region), exposures_per_px (fluence / dose), and, when the
study gives the object pixel size, pixel_size_m and fluence_per_m2; in a cell with model errors
error_level, error_kind, probe_error (relative), position_rms_error_px and errors (JSON).
Writers stream patterns in chunks; readers validate on open and read batches lazily.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import h5py
import numpy as np

from ptycho import FORMAT_VERSION
from ptycho.data.io import atomic_path
from ptycho.errors import DatasetError

REQUIRED_ATTRS = {
    "dose": (float, np.floating),
    "overlap_target": (float, np.floating),
    "overlap_measured": (float, np.floating),
    "split": (str, bytes),
    "seed": (int, np.integer),
    "N": (int, np.integer),
    "format_version": (int, np.integer),
    "config": (str, bytes),
}


@dataclass(frozen=True)
class DatasetMeta:
    dose: float
    overlap_target: float
    overlap_measured: float
    overlap_area: float
    probe_diameter: float
    split: str
    seed: int
    config: dict
    replicate: int = 0
    fluence: dict | None = None
    """``ptycho.physics.illumination.scan_fluence`` of the split (None: not recorded)."""
    errors: dict | None = None
    """The cell's error level (``ptycho.data.generate``: level label, kind, recorded probe error
    and position RMS error); None: the arms get the exact probe and positions."""


class DatasetWriter:
    """Stream-write a dataset: ``with DatasetWriter(path, ...) as w: w.write(counts_chunk)``.

    The file is written to a temporary name and renamed on success, so an interrupted or failed
    simulation leaves no file behind. Datasets are written without timestamps so the same inputs
    give a bit-identical file.
    """

    def __init__(self, path, n: int, positions, probe, obj, meta: DatasetMeta, chunk: int = 256,
                 extras: dict | None = None):
        self.path = Path(path)
        # further arrays (name -> array): the true probe and positions of an error cell, the
        # nominal probe modes
        self.extras = dict(extras or {})
        self.n = int(n)
        self.positions = np.asarray(positions, dtype=np.float64)
        self.probe = np.asarray(probe, dtype=np.complex64)
        # no ground truth (external data): the object grid is meta.config['object_size']
        self.obj = None if obj is None else np.asarray(obj, dtype=np.complex64)
        if self.obj is None and "object_size" not in meta.config:
            raise DatasetError(f"{self.path}: a file without ground truth needs 'object_size' in "
                               "its config")
        self.meta = meta
        self.chunk = max(1, min(int(chunk), max(self.n, 1)))
        self._cursor = 0
        self._ctx = None
        self._file = None

    def __enter__(self) -> Self:
        N = self.probe.shape[0]
        self._ctx = atomic_path(self.path, ".h5")
        tmp = self._ctx.__enter__()
        try:
            f = h5py.File(tmp, "w")
            self._file = f
            kw = {"track_times": False}
            # ~1 MiB chunks of whole patterns, LZF-compressed: counts are mostly zeros (30x
            # smaller at N = 128) and random batch reads decompress only the chunks they touch
            per_chunk = max(1, min(self.chunk, (1 << 20) // (4 * N * N)))
            f.create_dataset("diffraction", shape=(self.n, N, N), dtype="float32",
                             chunks=(per_chunk, N, N) if self.n else None,
                             compression="lzf" if self.n else None, **kw)
            f.create_dataset("positions", data=self.positions, **kw)
            f.create_dataset("probe", data=self.probe, **kw)
            if self.obj is not None:
                f.create_dataset("object", data=self.obj, **kw)
            for name, arr in self.extras.items():
                f.create_dataset(name, data=arr, **kw)
            m = self.meta
            f.attrs["dose"] = float(m.dose)
            f.attrs["overlap_target"] = float(m.overlap_target)
            f.attrs["overlap_measured"] = float(m.overlap_measured)
            f.attrs["overlap_area"] = float(m.overlap_area)
            f.attrs["probe_diameter"] = float(m.probe_diameter)
            f.attrs["split"] = m.split
            f.attrs["seed"] = int(m.seed)
            f.attrs["N"] = int(N)
            f.attrs["format_version"] = int(FORMAT_VERSION)
            f.attrs["config"] = json.dumps(m.config, sort_keys=True)
            f.attrs["replicate"] = int(m.replicate)
            if m.fluence is not None:
                f.attrs["fluence"] = float(m.fluence["photons_per_px"])
                f.attrs["exposures_per_px"] = float(m.fluence["exposures_per_px"])
                if m.fluence.get("photons_per_m2") is not None:
                    f.attrs["fluence_per_m2"] = float(m.fluence["photons_per_m2"])
                    f.attrs["pixel_size_m"] = float(m.fluence["pixel_size_m"])
            if m.errors is not None:
                f.attrs["error_level"] = str(m.errors["label"])
                f.attrs["error_kind"] = str(m.errors["kind"])
                f.attrs["probe_error"] = float(m.errors["probe_error"])
                f.attrs["position_rms_error_px"] = float(m.errors["position_rms_error_px"])
                f.attrs["errors"] = json.dumps(m.errors, sort_keys=True)
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    def write(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=np.float32)
        k = len(counts)
        if self._cursor + k > self.n:
            raise DatasetError(f"{self.path}: writing {self._cursor + k} patterns into a file of {self.n}")
        self._file["diffraction"][self._cursor : self._cursor + k] = counts
        self._cursor += k

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _abort(self, exc: BaseException) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - a full disk fails the flush too; the file goes anyway
            self._file = None
        self._ctx.__exit__(type(exc), exc, None)  # removes the temporary file

    def __exit__(self, et, ev, tb) -> bool:
        err = None
        try:
            self._close()  # HDF5 flushes here: a full disk may first show now
            if self._cursor != self.n:
                err = DatasetError(f"{self.path}: wrote {self._cursor} of {self.n} patterns")
        except Exception as exc:  # noqa: BLE001 - handed to atomic_path, which reports it
            err = exc
        if et is None and err is not None:
            # removes the temporary; raises a StorageError instead of a storage failure
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise err
        self._ctx.__exit__(et, ev, tb)  # renames on success, removes on error
        return False


class Dataset:
    """Validated, lazy reader of a dataset file. Use as a context manager or call ``close``."""

    def __init__(self, path, require_object: bool = True):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: dataset file not found")
        try:
            self._f = h5py.File(self.path, "r", rdcc_nbytes=32 << 20, rdcc_nslots=10007)
        except Exception as exc:
            raise DatasetError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        try:
            self._validate(require_object)
        except BaseException:
            self._f.close()
            raise
        # one handle for the file's lifetime: HDF5's chunk cache (rdcc_nbytes above) belongs to the
        # open dataset, so re-opening '/diffraction' per read would decompress every chunk again
        self._diff = self._f["diffraction"]
        self._n, self._N = int(self._diff.shape[0]), int(self._diff.shape[1])

    def _err(self, msg: str) -> DatasetError:
        return DatasetError(f"{self.path}: {msg}")

    def _validate(self, require_object: bool) -> None:
        f = self._f
        for key in ("diffraction", "positions", "probe"):
            if key not in f:
                raise self._err(f"missing dataset '/{key}'")
        for key, types in REQUIRED_ATTRS.items():
            if key not in f.attrs:
                raise self._err(f"missing root attribute '{key}'")
            if not isinstance(f.attrs[key], types):
                raise self._err(f"attribute '{key}' has type {type(f.attrs[key]).__name__}")
        if int(f.attrs["format_version"]) != FORMAT_VERSION:
            raise self._err(f"format_version {f.attrs['format_version']}, expected {FORMAT_VERSION}")
        d, p, pr = f["diffraction"], f["positions"], f["probe"]
        if d.ndim != 3 or d.shape[1] != d.shape[2]:
            raise self._err(f"'/diffraction' has shape {d.shape}, expected (n, N, N)")
        if d.dtype != np.float32:
            raise self._err(f"'/diffraction' has dtype {d.dtype}, expected float32 counts")
        n, N = d.shape[0], d.shape[1]
        if int(f.attrs["N"]) != N:
            raise self._err(f"attribute N = {f.attrs['N']} but '/diffraction' patterns are {N} x {N}")
        if p.shape != (n, 2) or p.dtype != np.float64:
            raise self._err(f"'/positions' has shape {p.shape} dtype {p.dtype}, expected ({n}, 2) float64")
        if pr.shape != (N, N) or pr.dtype != np.complex64:
            raise self._err(f"'/probe' has shape {pr.shape} dtype {pr.dtype}, expected ({N}, {N}) complex64")
        if "object" in f:
            o = f["object"]
            if o.ndim != 2 or o.dtype != np.complex64:
                raise self._err(f"'/object' has shape {o.shape} dtype {o.dtype}, expected (H, W) complex64")
        elif require_object:
            raise self._err("missing dataset '/object' (ground truth)")
        dose = float(f.attrs["dose"])
        if not np.isfinite(dose) or dose <= 0:
            raise self._err(f"attribute dose = {dose}, expected > 0 photons per exposure")
        split = f.attrs["split"]
        split = split.decode() if isinstance(split, bytes) else split
        if split not in ("train", "test"):
            raise self._err(f"attribute split = '{split}', expected 'train' or 'test'")

    # -- metadata
    @property
    def n(self) -> int:
        return self._n

    @property
    def N(self) -> int:
        return self._N

    @property
    def dose(self) -> float:
        return float(self._f.attrs["dose"])

    @property
    def replicate(self) -> int:
        """Replicate index of the file (0 for files written before replicates existed)."""
        return int(self._f.attrs.get("replicate", 0))

    @property
    def split(self) -> str:
        s = self._f.attrs["split"]
        return s.decode() if isinstance(s, bytes) else str(s)

    @property
    def attrs(self) -> dict:
        out = {}
        for k, v in self._f.attrs.items():
            out[k] = v.item() if isinstance(v, np.generic) else (v.decode() if isinstance(v, bytes) else v)
        return out

    @property
    def config(self) -> dict:
        return json.loads(self.attrs["config"])

    def meta(self, **changes) -> DatasetMeta:
        """This file's :class:`DatasetMeta` (dose, overlaps, probe diameter, split, seed, config,
        replicate), with ``changes`` applied: what a file derived from this one (other counts, a
        subset of its positions) starts from. The fluence is not carried: it belongs to the
        positions and counts the new file holds."""
        a = self.attrs
        base = {"dose": float(a["dose"]), "overlap_target": float(a["overlap_target"]),
                "overlap_measured": float(a["overlap_measured"]),
                "overlap_area": float(a.get("overlap_area", float("nan"))),
                "probe_diameter": float(a.get("probe_diameter", float("nan"))),
                "split": self.split, "seed": int(a["seed"]), "config": self.config,
                "replicate": self.replicate}
        return DatasetMeta(**{**base, **changes})

    @property
    def has_object(self) -> bool:
        return "object" in self._f

    @property
    def positions(self) -> np.ndarray:
        return self._f["positions"][()]

    @property
    def probe(self) -> np.ndarray:
        return self._f["probe"][()]

    @property
    def probe_modes(self) -> np.ndarray:
        """The nominal probe as incoherent modes (M, N, N) complex64: ``/probe_modes`` when the
        file has several, else ``/probe`` as one mode."""
        if "probe_modes" in self._f:
            return self._f["probe_modes"][()]
        return self.probe[None]

    @property
    def has_model_errors(self) -> bool:
        """True when the file's nominal probe or positions differ from the true ones."""
        return "true_probe" in self._f or "true_positions" in self._f

    @property
    def true_positions(self) -> np.ndarray:
        """The positions that made the data (simulated files; the nominal ones when no error)."""
        return self._f["true_positions"][()] if "true_positions" in self._f else self.positions

    @property
    def true_probe(self) -> np.ndarray:
        """The probe that made the data, (N, N) or modes (M, N, N) (the nominal one when no
        error)."""
        return self._f["true_probe"][()] if "true_probe" in self._f else self.probe_modes

    @property
    def errors(self) -> dict | None:
        """The cell's error record (``DatasetMeta.errors``), None for an exact cell."""
        a = self._f.attrs.get("errors")
        if a is None:
            return None
        return json.loads(a.decode() if isinstance(a, bytes) else a)

    @property
    def object(self) -> np.ndarray:
        if "object" not in self._f:
            raise self._err("no ground-truth '/object' in this file")
        return self._f["object"][()]

    @property
    def object_shape(self) -> tuple[int, int]:
        if "object" in self._f:
            return tuple(self._f["object"].shape)
        cfg = self.config
        return tuple(cfg["object_size"])

    def check_positions(self) -> None:
        """DatasetError naming the file and the first position that is not finite or whose
        N x N patch leaves the object (training and reconstruction call this before starting)."""
        from ptycho.physics.forward import check_positions

        pos = self.positions
        if not np.all(np.isfinite(pos)):
            raise self._err(f"'/positions' row {int(np.flatnonzero(~np.isfinite(pos).all(1))[0])} "
                            "is not finite")
        try:
            check_positions(self.object_shape, pos, self.N)
        except DatasetError as exc:
            raise self._err(f"'/positions': {exc}") from None

    # -- data
    def read(self, indices=None) -> np.ndarray:
        """Counts of the given pattern indices (sorted reads; original order returned)."""
        d = self._diff
        if indices is None:
            return d[()]
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.empty((0, self.N, self.N), np.float32)
        if idx.min() < 0 or idx.max() >= self.n:
            raise IndexError(f"{self.path}: pattern indices must lie in [0, {self.n}), got "
                             f"[{idx.min()}, {idx.max()}]")
        uniq, inv = np.unique(idx, return_inverse=True)
        block = np.empty((uniq.size, self.N, self.N), np.float32)
        # one slice read per run of consecutive indices: h5py's point selection (d[list]) costs
        # ~0.2 ms per pattern, a slice through the chunk cache ~0.01 ms
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        for run in np.split(np.arange(uniq.size), breaks):
            a, b = int(uniq[run[0]]), int(uniq[run[-1]]) + 1
            block[run[0] : run[-1] + 1] = d[a:b]
        return block[inv.reshape(-1)]

    def iter_batches(self, batch_size: int, indices=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (indices, counts) batches; only one batch is in memory at a time."""
        idx = np.arange(self.n) if indices is None else np.asarray(indices)
        for s in range(0, len(idx), batch_size):
            sel = idx[s : s + batch_size]
            yield sel, self.read(sel)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
