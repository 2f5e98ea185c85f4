"""ptychodus product and diffraction files, written and read with ptychodus's own functions.

A split or a reconstruction becomes a ptychodus *standard layout* pair: ``diffraction.h5``
(``ptychodus.api.io.save_diffraction_data``: the counts, their indexes, the detector pixel size,
no bad pixels) and ``product.h5`` (``ptychodus.api.io.save_product``: metadata, probe, object,
positions, loss history). Conventions, written into every file:

- Metadata: ``photon_energy_eV`` and ``detector_object_distance_m`` from the study's
  ``geometry:``; ``probe_photon_count`` is the incident dose D (photons per exposure, this
  project's definition); far field, no focusing optic.
- Pixel sizes: the detector pitch p is the diffraction file's pixel size; the object and probe
  pixel size is ptychodus's far-field ``lambda z / (N p)`` (``compute_far_field_pixel_geometry``).
- Object: this project's object (the ground truth of a split, ones where a split has none, or an
  arm's reconstruction), one layer, its centre at (0, 0) m.
- Positions: metres in the object-centre frame. A patch centre (cy, cx) in this project's object
  pixels (patch pixel (i, j) at (cy - N/2 + i, cx - N/2 + j)) is ptychodus object pixel
  (cy - 1/2, cx - 1/2) (ptychodus centres an N-pixel patch at pixel (N - 1)/2), so
  ``x_m = (cx - W/2) dx`` and ``y_m = (cy - H/2) dy``: the object's centre is position (0, 0).
- Probe: this project's probe as stored (max |P| = 1; the photon scale is ``probe_photon_count``);
  M incoherent modes (M, N, N) are ptychodus's probe array (1, M, N, N) (one coherent mode, no
  OPR), and are read back as M modes.
- A reconstruction's product carries the probe and positions the arm ended with when it refined
  them, else the split's nominal ones (``comments``: ``probe_from``, ``positions_from``).
- Loss history: the iterative arm's cost per epoch, a network arm's validation loss per epoch.
- ``comments``: JSON with the study, scale, cell, split or arm and these conventions.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.constants import energy_eV_to_wavelength_m
from ptychodus.api.geometry import ImageExtent, PixelGeometry
from ptychodus.api.io import (
    DiffractionFileKeys,
    load_diffraction_data,
    load_product,
    save_diffraction_data,
    save_product,
)
from ptychodus.api.object import Object, ObjectCenter, ObjectGeometry, ObjectPosition
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePositionSequence
from ptychodus.api.product import LossValue, Product, ProductMetadata
from ptychodus.api.propagate import compute_far_field_pixel_geometry

from ptycho.config import GeometryConfig
from ptycho.data.dataset import Dataset
from ptycho.data.io import atomic_path
from ptycho.data.probe_file import as_modes
from ptycho.data.source import SplitSource, object_shape_from_positions
from ptycho.errors import DatasetError

PRODUCT = "product.h5"
DIFFRACTION = "diffraction.h5"
CONVENTIONS = ("positions: metres in the object-centre frame, x_m = (cx - W/2) dx, y_m = (cy - H/2) "
               "dy for a patch centre (cy, cx) in object pixels (patch pixel (i, j) at "
               "(cy - N/2 + i, cx - N/2 + j)); probe_photon_count: incident photons per exposure; "
               "probe as simulated (max |P| = 1); diffraction: photon counts, zero frequency at "
               "(N/2, N/2)")


def object_pixel_geometry(geometry: GeometryConfig, N: int) -> PixelGeometry:
    """Object-plane pixel size of an N x N far-field detector (ptychodus's Fraunhofer relation)."""
    pitch = PixelGeometry(width_m=geometry.detector_pixel_size_m,
                          height_m=geometry.detector_pixel_size_m)
    return compute_far_field_pixel_geometry(
        pitch, ImageExtent(width_px=N, height_px=N),
        wavelength_m=energy_eV_to_wavelength_m(geometry.photon_energy_eV),
        propagation_distance_m=geometry.detector_distance_m)


def object_geometry(shape: tuple[int, int], pixel: PixelGeometry) -> ObjectGeometry:
    """ptychodus geometry of an (H, W) object centred on (0, 0) m."""
    H, W = (int(s) for s in shape)
    return ObjectGeometry(width_px=W, height_px=H, pixel_width_m=pixel.width_m,
                          pixel_height_m=pixel.height_m, center_x_m=0.0, center_y_m=0.0)


def positions_to_ptychodus(positions: np.ndarray, geom: ObjectGeometry) -> ProbePositionSequence:
    """Patch centres (y, x) in this project's object pixels -> ptychodus positions (m)."""
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    return ProbePositionSequence([
        geom.map_coordinates_object_to_probe(ObjectPosition(i, float(x) - 0.5, float(y) - 0.5))
        for i, (y, x) in enumerate(pos)])


def positions_from_ptychodus(seq: ProbePositionSequence, geom: ObjectGeometry) -> np.ndarray:
    """ptychodus positions (m) -> patch centres (y, x) in this project's object pixels, (n, 2)."""
    x = geom.map_probe_positions_to_object_x_px(seq) + 0.5
    y = geom.map_probe_positions_to_object_y_px(seq) + 0.5
    return np.stack([y, x], axis=1).astype(np.float64)


def build_product(name: str, comments: dict, obj: np.ndarray, probe: np.ndarray,
                  positions: np.ndarray, geometry: GeometryConfig, dose: float,
                  losses=()) -> Product:
    """A ptychodus ``Product`` of this project's arrays (see the module docstring)."""
    N = int(probe.shape[-1])
    pixel = object_pixel_geometry(geometry, N)
    geom = object_geometry(obj.shape, pixel)
    metadata = ProductMetadata(
        name=name, comments=json.dumps({**comments, "conventions": CONVENTIONS}, sort_keys=True),
        detector_distance_m=float(geometry.detector_distance_m),
        photon_energy_eV=float(geometry.photon_energy_eV), probe_photon_count=float(dose),
        exposure_time_s=0.0, mass_attenuation_m2_per_kg=0.0, tomography_angle_deg=0.0)
    return Product(
        metadata=metadata,
        probe_positions=positions_to_ptychodus(positions, geom),
        probes=ProbeSequence(np.asarray(probe, dtype=np.complex64), None, pixel),
        object_=Object(np.asarray(obj, dtype=np.complex64), pixel,
                       ObjectCenter(geom.center_x_m, geom.center_y_m)),
        losses=[LossValue(i, float(v)) for i, v in enumerate(losses)],
    )


def write_product(path, product: Product) -> None:
    """``save_product`` to a temporary name, renamed on success."""
    with atomic_path(path, ".h5") as tmp:
        save_product(tmp, product)


def write_diffraction(path, dataset_path, geometry: GeometryConfig, chunk: int = 256) -> None:
    """The counts of a dataset file as a ptychodus diffraction file (``save_diffraction_data``),
    staged through a memory map beside ``path`` so memory stays bounded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Dataset(dataset_path, require_object=False) as ds, \
            tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=".stage") as stage:
        patterns = np.memmap(stage.name, dtype=np.float32, mode="w+", shape=(ds.n, ds.N, ds.N))
        for idx, block in ds.iter_batches(chunk):
            patterns[idx] = block
        patterns.flush()
        pitch = PixelGeometry(width_m=geometry.detector_pixel_size_m,
                              height_m=geometry.detector_pixel_size_m)
        data = AssembledDiffractionData(np.arange(ds.n, dtype=np.intp), patterns, pitch,
                                        np.zeros((ds.N, ds.N), dtype=bool))
        with atomic_path(path, ".h5") as tmp:
            save_diffraction_data(tmp, data)
        del data, patterns


def _dataset_comments(ds: Dataset) -> dict:
    cfg = ds.config
    study = cfg.get("study")
    return {"study": study.get("study") if isinstance(study, dict) else study,
            "scale": cfg.get("scale"), "dose": ds.dose, "overlap_view": cfg.get("overlap_view"),
            "split": ds.split, "ground_truth": ds.has_object}


def export_split(dataset_path, out_dir, geometry: GeometryConfig | None = None) -> dict:
    """``out_dir/diffraction.h5`` and ``out_dir/product.h5`` of a dataset file (the product's
    object is the ground truth, or ones when the file has none); returns the paths."""
    geometry = geometry or GeometryConfig()
    out_dir = Path(out_dir)
    with Dataset(dataset_path, require_object=False) as ds:
        obj = ds.object if ds.has_object else np.ones(ds.object_shape, np.complex64)
        comments = _dataset_comments(ds)
        modes = ds.probe_modes
        comments["probe_modes"] = len(modes)
        product = build_product(f"{comments['study']} {Path(dataset_path).parent.name} "
                                f"{ds.split}", comments, obj, modes if len(modes) > 1 else
                                ds.probe, ds.positions, geometry, ds.dose)
    write_diffraction(out_dir / DIFFRACTION, dataset_path, geometry)
    write_product(out_dir / PRODUCT, product)
    return {"diffraction": out_dir / DIFFRACTION, "product": out_dir / PRODUCT}


def export_reconstruction(rec, test_path, product_path, geometry: GeometryConfig | None = None,
                          losses=()) -> None:
    """A reconstruction (``ptycho.reconstruct.io.Reconstruction``) of the test split
    ``test_path`` as a ptychodus product: its object, and the probe (all modes) and positions the
    arm ended with when it refined them, else the split's nominal ones (recorded in the
    comments as ``probe_from`` / ``positions_from``)."""
    geometry = geometry or GeometryConfig()
    with Dataset(test_path, require_object=False) as ds:
        if tuple(rec.object.shape) != tuple(ds.object_shape):
            raise DatasetError(f"{test_path}: object grid {ds.object_shape} differs from the "
                               f"{rec.arm} reconstruction's {rec.object.shape}")
        comments = {**_dataset_comments(ds), "arm": rec.arm, "gridsize": rec.gridsize,
                    "reconstruction_wall_time_s": rec.wall_time_s}
        modes, positions = ds.probe_modes, ds.positions
        comments["probe_from"] = comments["positions_from"] = "nominal (the split's)"
        if rec.probe is not None:
            modes = as_modes(rec.probe, f"{rec.source}: the {rec.arm} arm's probe")
            comments["probe_from"] = f"the {rec.arm} arm's final probe"
        if rec.positions is not None:
            positions = np.asarray(rec.positions, dtype=np.float64)
            if positions.shape != (ds.n, 2):
                raise DatasetError(f"{test_path}: the {rec.arm} arm's positions "
                                   f"{positions.shape} do not match the split's {ds.n} patterns")
            comments["positions_from"] = f"the {rec.arm} arm's final positions"
        comments["probe_modes"] = len(modes)
        product = build_product(f"{comments['study']} {rec.arm} {Path(test_path).parent.name}",
                                comments, rec.object, modes if len(modes) > 1 else modes[0],
                                positions, geometry, ds.dose, losses)
    write_product(product_path, product)


def _probe_modes(product: Product, where) -> np.ndarray:
    """The product's probe as incoherent modes (M, N, N): ptychodus's (1, M, N, N) array (one
    coherent mode; several coherent / OPR modes are refused)."""
    arr = np.asarray(product.probes.get_array())
    if arr.ndim == 4 and arr.shape[0] != 1:
        raise DatasetError(f"{where}: probe has shape {arr.shape}; only one coherent mode (no "
                           "OPR modes) is supported")
    return as_modes(arr, str(where))


def _single_layer(product: Product, where) -> np.ndarray:
    obj = product.object_
    if obj.num_layers != 1:
        raise DatasetError(f"{where}: object has {obj.num_layers} layers; only one is supported")
    return np.asarray(obj.get_layer(0), dtype=np.complex64)


def read_product(path) -> tuple[Product, np.ndarray, np.ndarray, np.ndarray]:
    """``load_product`` with clear errors: (product, object (H, W), probe modes (M, N, N),
    positions (n, 2) in this project's object pixels)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: ptychodus product file not found")
    try:
        product = load_product(path)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable ptychodus product file "
                           f"({type(exc).__name__}: {exc})") from exc
    obj = _single_layer(product, path)
    probe = _probe_modes(product, path)
    positions = positions_from_ptychodus(product.probe_positions, product.object_.get_geometry())
    return product, obj, probe, positions


def open_ptychodus(product_path, diffraction_path) -> SplitSource:
    """A split from a ptychodus product (probe, object, positions, ``probe_photon_count`` as the
    incident dose when non-zero) and its diffraction file (counts), paired by scan index."""
    import h5py

    product, obj, modes, positions = read_product(product_path)
    probe = modes[0]
    diffraction_path = Path(diffraction_path)
    if not diffraction_path.is_file():
        raise DatasetError(f"{diffraction_path}: ptychodus diffraction file not found")
    try:
        with h5py.File(diffraction_path, "r") as f:
            shape = f[DiffractionFileKeys.PATTERNS].shape
            dtype = f[DiffractionFileKeys.PATTERNS].dtype
            indexes = f[DiffractionFileKeys.INDEXES][()]
    except (KeyError, OSError) as exc:
        raise DatasetError(f"{diffraction_path}: not a readable ptychodus diffraction file "
                           f"({exc})") from exc
    where = f"{product_path} + {diffraction_path}"
    if len(shape) != 3 or shape[1] != shape[2] or dtype.kind not in "fiu":
        raise DatasetError(f"{diffraction_path}: patterns have shape {shape} dtype {dtype}, "
                           "expected (n, N, N) counts")
    order = _pairing(product.probe_positions.get_indexes(), indexes, where)
    N = int(shape[1])
    dose = float(product.metadata.probe_photon_count) or None

    def counts(size: int) -> Iterator[np.ndarray]:
        with _staged(diffraction_path) as data:
            patterns = data.get_patterns()
            for a in range(0, len(order), size):
                yield np.asarray(patterns[order[a : a + size]], dtype=np.float32)

    return SplitSource(where=where, format="ptychodus", positions=positions, probe=probe,
                       object=obj, object_shape=tuple(obj.shape) if obj.size else
                       object_shape_from_positions(positions, N),
                       n=len(order), N=N, dose=dose, iter_counts=counts,
                       info={"product": str(product_path), "name": product.metadata.name},
                       probe_modes=modes if len(modes) > 1 else None)


def _pairing(position_indexes: np.ndarray, pattern_indexes: np.ndarray, where) -> np.ndarray:
    """For each product position (in order), the row of its pattern in the diffraction file."""
    pi, di = np.asarray(position_indexes), np.asarray(pattern_indexes)
    if len(pi) != len(di):
        raise DatasetError(f"{where}: {len(pi)} positions but {len(di)} diffraction patterns "
                           "(pattern counts must match)")
    rows = {int(k): r for r, k in enumerate(di)}
    missing = [int(k) for k in pi if int(k) not in rows]
    if missing or len(rows) != len(di):
        raise DatasetError(f"{where}: scan indexes of positions and patterns differ "
                           f"(e.g. {missing[:5]})")
    return np.array([rows[int(k)] for k in pi], dtype=np.int64)


@contextlib.contextmanager
def _staged(diffraction_path):
    """``load_diffraction_data`` staged into a temporary memory map (bounded memory)."""
    with tempfile.TemporaryDirectory(prefix="ptycho-ptychodus-") as tmp:
        yield load_diffraction_data(Path(diffraction_path), mmap_file=Path(tmp) / "patterns.mmap")


def import_reconstruction(product_path, arm: str | None = None):
    """A ptychodus product as this project's ``Reconstruction`` (object on the product's grid,
    weight = the summed probe intensity of its positions; arm, dose and view from its comments)."""
    from ptycho.physics.illumination import illumination_map
    from ptycho.reconstruct.io import Reconstruction

    product, obj, modes, positions = read_product(product_path)
    try:
        notes = json.loads(product.metadata.comments or "{}")
    except json.JSONDecodeError:
        notes = {}
    probe = modes[0] if len(modes) == 1 else np.sqrt(np.sum(np.abs(modes) ** 2, axis=0))
    return Reconstruction(
        object=obj, weight=illumination_map(obj.shape, positions, probe).astype(np.float32),
        arm=arm or str(notes.get("arm", "external")), gridsize=int(notes.get("gridsize", 1)),
        dose=float(product.metadata.probe_photon_count),
        overlap_view=str(notes.get("overlap_view", "")), n_patterns=len(positions),
        wall_time_s=float(notes.get("reconstruction_wall_time_s", 0.0)),
        source=str(product_path), info={"imported_from": str(product_path),
                                        "losses": [lv.value for lv in product.losses]},
        probe=modes if len(modes) > 1 or notes.get("probe_from", "").endswith("final probe")
        else None,
        positions=positions if notes.get("positions_from", "").endswith("final positions")
        else None)


__all__ = ["DIFFRACTION", "PRODUCT", "build_product", "export_reconstruction", "export_split",
           "import_reconstruction", "object_pixel_geometry", "open_ptychodus",
           "positions_from_ptychodus", "positions_to_ptychodus", "read_product",
           "write_diffraction", "write_product"]
