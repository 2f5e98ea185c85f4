"""PtychoPINN NPZ export and import.

Keys and conventions are those PtychoPINN's own loaders read (hoidn/PtychoPINN:
``ptycho.workflows.components.load_data`` reads ``xcoords``, ``ycoords``, ``xcoords_start``,
``ycoords_start``, ``diff3d`` (or its alias ``diffraction``), ``probeGuess`` and, optionally,
``objectGuess`` and ``Y``; ``ptycho.raw_data.RawData.from_file`` reads ``diff3d``,
``scan_index`` and ``objectGuess`` as well; ``ptycho.metadata.MetadataManager`` reads the JSON
string ``_metadata``, whose ``physics_parameters.nphotons`` is the mean number of counts per
diffraction pattern):

================  ===========  =========  ============================================================
key               shape        dtype      meaning
================  ===========  =========  ============================================================
diff3d            (n, N, N)    float32    diffraction *amplitude*, sqrt(counts), zero frequency at N/2
diffraction       (n, N, N)    float32    the same array (the alias older PtychoPINN code reads)
xcoords           (n,)         float64    patch centre x (column) in objectGuess pixels
ycoords           (n,)         float64    patch centre y (row) in objectGuess pixels
xcoords_start     (n,)         float64    = xcoords (single patterns: the group start is the position)
ycoords_start     (n,)         float64    = ycoords
probeGuess        (N, N)       complex64  the probe (this project's, max |P| = 1); the first mode when
                                          the probe has several incoherent modes
probeModes        (M, N, N)    complex64  every incoherent probe mode (only when M >= 2; this
                                          project's key, read back by ``open_npz``)
objectGuess       (H, W)       complex64  ground truth, or the reconstruction for an exported arm;
                                          absent when there is none
scan_index        (n,)         int64      zeros (one object)
_metadata         ()           str        JSON: physics_parameters {nphotons: mean counts per pattern,
                                          N, gridsize: 1}; additional_parameters {dose_photons_per_
                                          exposure (incident), geometry, split, ...}
================  ===========  =========  ============================================================

Patch pixel (i, j) of a position (y, x) sits at objectGuess pixel (y - N/2 + i, x - N/2 + j), the
convention of this project and of PtychoPINN's patch extraction. Arrays are streamed in batches
through ``numpy.lib.format`` into the ZIP container (deflate), so memory stays bounded, and files
carry no timestamps (the same dataset exports to the same bytes).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ptycho import __version__
from ptycho.config import GeometryConfig
from ptycho.data.dataset import Dataset, DatasetMeta
from ptycho.data.io import atomic_path
from ptycho.data.source import SplitSource, check_split, object_shape_from_positions, write_split
from ptycho.errors import DatasetError

# What PtychoPINN's loaders read (see the module docstring); every export writes all of them.
PTYCHOPINN_REQUIRED = ("xcoords", "ycoords", "xcoords_start", "ycoords_start", "diff3d",
                       "probeGuess")
PTYCHOPINN_OPTIONAL = ("objectGuess", "scan_index", "_metadata")
PROBE_MODES_KEY = "probeModes"  # this project's: every incoherent mode (M >= 2)
DIFFRACTION_KEYS = ("diff3d", "diffraction")
METADATA_KEY = "_metadata"
METADATA_SCHEMA = "1.0.0"
NPHOTONS_MEANING = "mean total counts per diffraction pattern (PtychoPINN's nphotons)"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
INTEGER_TOLERANCE = 1e-5  # relative: amplitude^2 of float32 sqrt(counts) is counts to 2.4e-7


def _member(zf: zipfile.ZipFile, key: str, mode: str = "r"):
    if mode == "w":
        info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        return zf.open(info, "w", force_zip64=True)
    return zf.open(f"{key}.npy")


def _write_array(zf: zipfile.ZipFile, key: str, arr) -> None:
    with _member(zf, key, "w") as fp:
        np.lib.format.write_array(fp, np.asarray(arr), allow_pickle=False)


def _write_stream(zf: zipfile.ZipFile, keys, shape: tuple, dtype, blocks) -> None:
    """Write the same streamed array under every key of ``keys`` (one pass over ``blocks`` per
    key: ``blocks`` is a function returning a fresh iterator)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    for key in keys:
        with _member(zf, key, "w") as fp:
            np.lib.format.write_array_header_2_0(fp, header)
            for block in blocks():
                fp.write(np.ascontiguousarray(block, dtype=dtype).tobytes())


def _header(fp) -> tuple[tuple, np.dtype, bool]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    return np.lib.format.read_array_header_2_0(fp)


def npz_headers(path) -> dict[str, tuple[tuple, np.dtype]]:
    """{key: (shape, dtype)} of every array in an NPZ, without reading the data."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as fp:
                        shape, fortran, dtype = _header(fp)
                    out[name[:-4]] = (tuple(shape), np.dtype(dtype), fortran)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable NPZ file ({exc})") from exc
    return {k: (s, d) for k, (s, d, _) in out.items()}


def _iter_rows(path, key: str, size: int) -> Iterator[np.ndarray]:
    """Blocks of ``size`` rows (first axis) of a C-ordered array in an NPZ, read sequentially."""
    with zipfile.ZipFile(path) as zf, _member(zf, key) as fp:
        shape, fortran, dtype = _header(fp)
        if fortran:
            raise DatasetError(f"{path}: '{key}' is stored in Fortran order; save it C-ordered")
        row = int(np.prod(shape[1:], dtype=np.int64))
        for a in range(0, shape[0], size):
            k = min(size, shape[0] - a)
            buf = fp.read(k * row * dtype.itemsize)
            yield np.frombuffer(buf, dtype=dtype).reshape((k,) + tuple(shape[1:]))


def read_metadata(path) -> dict:
    """The ``_metadata`` JSON of an NPZ ({} when absent; DatasetError when unreadable)."""
    with np.load(path, allow_pickle=False) as z:
        if METADATA_KEY not in z.files:
            return {}
        raw = z[METADATA_KEY]
    try:
        value = raw.item()
        return json.loads(value.decode() if isinstance(value, bytes) else value)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: '{METADATA_KEY}' is not a JSON string ({exc})") from exc


def export_npz(dataset_path, npz_path, geometry: GeometryConfig | None = None,
               reconstruction=None, chunk: int = 256) -> dict:
    """Write a dataset file as a PtychoPINN NPZ; returns the ``_metadata`` written.

    ``reconstruction`` (a :class:`ptycho.reconstruct.io.Reconstruction` of this split) replaces
    ``objectGuess`` by the reconstructed object and records its arm; the probe and positions are
    the arm's own final ones when it refined them (its ``probe`` / ``positions``), else the
    split's nominal ones, and ``additional_parameters`` records which (``probe_from``,
    ``positions_from``). A probe of several incoherent modes is written as ``probeGuess`` (the
    first) and ``probeModes`` (all). ``geometry`` (default: the study defaults) is recorded with
    the derived object pixel size.
    """
    from ptycho.data.probe_file import as_modes, probe_sha256
    from ptycho.physics.units import geometry_record

    geometry = geometry or GeometryConfig()
    dataset_path = Path(dataset_path)
    with Dataset(dataset_path, require_object=False) as ds:
        n, N, pos, modes = ds.n, ds.N, ds.positions, ds.probe_modes
        obj = ds.object if ds.has_object else None
        attrs, cfg = ds.attrs, ds.config
        total = 0.0
        for _, block in ds.iter_batches(chunk):
            total += float(block.sum(dtype=np.float64))
    probe_from = positions_from = "nominal (the split's)"
    if reconstruction is not None:
        obj = np.asarray(reconstruction.object, dtype=np.complex64)
        if reconstruction.probe is not None:
            modes = as_modes(reconstruction.probe, f"{reconstruction.source}: arm probe")
            probe_from = f"the {reconstruction.arm} arm's final probe"
        if reconstruction.positions is not None:
            pos = np.asarray(reconstruction.positions, dtype=np.float64)
            if pos.shape != (n, 2):
                raise DatasetError(f"{dataset_path}: the {reconstruction.arm} arm's positions "
                                   f"{pos.shape} do not match the split's {n} patterns")
            positions_from = f"the {reconstruction.arm} arm's final positions"
    modes = np.ascontiguousarray(modes, dtype=np.complex64)
    if modes.shape[-1] != N:
        raise DatasetError(f"{dataset_path}: probe of {modes.shape[-1]} px for {N} px patterns")
    probe = modes[0]
    extra = {
        "dose_photons_per_exposure": float(attrs["dose"]),
        "nphotons_meaning": NPHOTONS_MEANING,
        "diffraction": "amplitude = sqrt(counts); counts = diff3d ** 2 (photons)",
        "coordinates": "patch centre in objectGuess pixels; patch pixel (i, j) at "
                       "(ycoords - N/2 + i, xcoords - N/2 + j)",
        "split": attrs["split"], "overlap_view": cfg.get("overlap_view"),
        "overlap_target": attrs.get("overlap_target"),
        "overlap_measured": attrs.get("overlap_measured"),
        "object_size": list(obj.shape) if obj is not None else list(cfg["object_size"]),
        "objectGuess": ("reconstruction" if reconstruction is not None
                        else "ground truth" if obj is not None else "absent"),
        "source": dataset_path.name, "geometry": geometry_record(geometry, N),
        "probe_modes": len(modes), "probe_sha256": probe_sha256(modes),
    }
    if reconstruction is not None:
        extra["probe_from"] = probe_from
        extra["positions_from"] = positions_from
    if reconstruction is not None:
        extra["arm"] = reconstruction.arm
    meta = {"schema_version": METADATA_SCHEMA,
            "creation_info": {"script": "ptycho-dose export_npz", "ptycho_dose_version": __version__},
            "physics_parameters": {"nphotons": total / max(n, 1), "N": N, "gridsize": 1},
            "additional_parameters": extra}

    def amplitudes():
        with Dataset(dataset_path, require_object=False) as ds:
            for _, block in ds.iter_batches(chunk):
                yield np.sqrt(block, dtype=np.float32)

    with atomic_path(npz_path, ".npz") as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        _write_stream(zf, DIFFRACTION_KEYS, (n, N, N), np.float32, amplitudes)
        for key, arr in (("xcoords", pos[:, 1]), ("ycoords", pos[:, 0]),
                         ("xcoords_start", pos[:, 1]), ("ycoords_start", pos[:, 0]),
                         ("probeGuess", probe.astype(np.complex64)),
                         ("scan_index", np.zeros(n, dtype=np.int64))):
            _write_array(zf, key, np.ascontiguousarray(arr))
        if len(modes) > 1:
            _write_array(zf, PROBE_MODES_KEY, modes)
        if obj is not None:
            _write_array(zf, "objectGuess", obj.astype(np.complex64))
        _write_array(zf, METADATA_KEY, np.array(json.dumps(meta, sort_keys=True)))
    return meta


def _need(headers: dict, path, key: str, kinds: str, ndim: int) -> tuple:
    if key not in headers:
        raise DatasetError(f"{path}: missing key '{key}' (PtychoPINN NPZ keys: "
                           f"{list(PTYCHOPINN_REQUIRED)} and optional {list(PTYCHOPINN_OPTIONAL)})")
    shape, dtype = headers[key]
    if dtype.kind not in kinds or len(shape) != ndim:
        want = {"f": "float", "c": "complex", "i": "int", "u": "uint"}
        raise DatasetError(f"{path}: '{key}' has dtype {dtype} and shape {shape}, expected a "
                           f"{ndim}-D {' or '.join(want[k] for k in kinds)} array")
    return shape


def open_npz(path) -> SplitSource:
    """A split from a PtychoPINN NPZ (counts = diffraction amplitude squared).

    Positions are ``ycoords`` / ``xcoords`` (PtychoPINN's ``*_start`` keys, pre-correction
    coordinates, are not needed). Amplitudes whose squares are whole numbers are counts; otherwise (PtychoPINN's normalised
    amplitudes) they are scaled so that the mean counts per pattern equal ``nphotons`` of
    ``_metadata``, and a file with neither is refused. The incident dose is
    ``additional_parameters.dose_photons_per_exposure`` when the file records it.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: NPZ file not found")
    headers = npz_headers(path)
    key = next((k for k in DIFFRACTION_KEYS if k in headers), "diff3d")
    dshape = _need(headers, path, key, "f", 3)
    n, N = dshape[0], dshape[1]
    if dshape[1] != dshape[2]:
        raise DatasetError(f"{path}: '{key}' has shape {dshape}, expected (n, N, N) square "
                           "patterns (transpose a legacy (N, N, n) array first)")
    for k in ("xcoords", "ycoords"):
        shape = _need(headers, path, k, "fiu", 1)
        if shape[0] != n:
            raise DatasetError(f"{path}: '{k}' holds {shape[0]} positions but '{key}' holds {n} "
                               "patterns (pattern counts must match)")
    _need(headers, path, "probeGuess", "c", 2)
    if PROBE_MODES_KEY in headers:
        _need(headers, path, PROBE_MODES_KEY, "c", 3)
    if "objectGuess" in headers:
        _need(headers, path, "objectGuess", "c", 2)
    meta = read_metadata(path)
    with np.load(path, allow_pickle=False) as z:
        pos = np.stack([z["ycoords"], z["xcoords"]], axis=1).astype(np.float64)
        probe = z["probeGuess"].astype(np.complex64)
        modes = (z[PROBE_MODES_KEY].astype(np.complex64) if PROBE_MODES_KEY in z.files
                 else None)
        obj = z["objectGuess"].astype(np.complex64) if "objectGuess" in z.files else None
    if modes is not None:
        if modes.shape[1:] != probe.shape or not np.array_equal(modes[0], probe):
            raise DatasetError(f"{path}: '{PROBE_MODES_KEY}' {modes.shape} does not hold "
                               "'probeGuess' as its first mode")
        modes = modes if len(modes) > 1 else None
    extra = meta.get("additional_parameters") or {}
    nphotons = (meta.get("physics_parameters") or {}).get("nphotons")
    dose = extra.get("dose_photons_per_exposure")
    shape = tuple(obj.shape) if obj is not None else (
        tuple(extra["object_size"]) if extra.get("object_size") else
        object_shape_from_positions(pos, N))
    scale = {"factor": None}

    def counts(size: int) -> Iterator[np.ndarray]:
        if scale["factor"] is None:
            scale["factor"] = _count_scale(path, key, size, nphotons)
        f = scale["factor"]
        for block in _iter_rows(path, key, size):
            c = np.square(block, dtype=np.float64)
            yield (np.rint(c) if f == 1.0 else c * f).astype(np.float32)

    info = {"diffraction_key": key, "nphotons": nphotons}
    return SplitSource(where=str(path), format="npz", positions=pos, probe=probe, object=obj,
                       object_shape=shape, n=n, N=N, dose=None if dose is None else float(dose),
                       iter_counts=counts, info=info, probe_modes=modes)


def _count_scale(path, key: str, size: int, nphotons) -> float:
    """1.0 when the squared amplitudes are whole counts; else the factor that makes their mean
    per pattern ``nphotons``."""
    total, n, whole = 0.0, 0, True
    for block in _iter_rows(path, key, size):
        c = np.square(block, dtype=np.float64)
        if np.any(block < 0) or not np.all(np.isfinite(block)):
            raise DatasetError(f"{path}: '{key}' holds negative, NaN or inf amplitudes")
        whole = whole and bool(np.all(np.abs(c - np.rint(c)) <= INTEGER_TOLERANCE * np.maximum(c, 1)))
        total += float(c.sum())
        n += len(c)
    if whole:
        return 1.0
    if nphotons is None or not float(nphotons) > 0:
        raise DatasetError(f"{path}: '{key}' squared is not whole photon counts and "
                           f"'{METADATA_KEY}' gives no physics_parameters.nphotons to scale it")
    if total <= 0:
        raise DatasetError(f"{path}: '{key}' is zero everywhere")
    return float(nphotons) * n / total


def import_npz(npz_path, dataset_path, dose: float | None = None, split: str = "test",
               seed: int = 0, keep_object: bool = True) -> dict:
    """Convert a PtychoPINN NPZ into a dataset file (see :func:`open_npz`); ``dose`` (incident
    photons per exposure) is needed when the file records none and must match it otherwise."""
    from ptycho.physics.probe import energy_diameter
    from ptycho.physics.scan import measured_overlap

    src = open_npz(npz_path)
    check_split(src)
    if src.dose is not None and dose is not None and not np.isclose(src.dose, dose, rtol=1e-9):
        raise DatasetError(f"{npz_path}: records a dose of {src.dose:g} photons per exposure, "
                           f"not {dose:g}")
    dose = src.dose if dose is None else float(dose)
    if dose is None:
        raise DatasetError(f"{npz_path}: records no incident dose; pass dose= (photons per "
                           "exposure)")
    d = energy_diameter(src.probe, 0.9)
    f = measured_overlap(src.positions, d) if src.n > 1 else float("nan")
    meta = DatasetMeta(dose=dose, overlap_target=f, overlap_measured=f, overlap_area=float("nan"),
                       probe_diameter=d, split=split, seed=int(seed),
                       config={"imported_from": {"format": "npz", "file": str(npz_path)},
                               "object_size": list(src.object_shape)})
    return write_split(src, dataset_path, meta, keep_object=keep_object and src.object is not None)


__all__ = ["DIFFRACTION_KEYS", "PROBE_MODES_KEY", "PTYCHOPINN_OPTIONAL", "PTYCHOPINN_REQUIRED", "export_npz",
           "import_npz", "npz_headers", "open_npz", "read_metadata"]
