"""PtychoPINN NPZ and ptychodus files: keys and conventions of the other programs' readers, exact
round trips, clear errors on bad external files."""

import importlib.util
import json
import zipfile

import h5py
import numpy as np
import pytest
from conftest import small_study_dict

from ptycho.config import GeometryConfig, StudyConfig
from ptycho.data.dataset import Dataset
from ptycho.data.generate import simulate_cell
from ptycho.data.source import check_split
from ptycho.errors import DatasetError
from ptycho.interop.external import open_split
from ptycho.interop.npz import export_npz, import_npz, open_npz
from ptycho.physics.units import object_pixel_size_m
from ptycho.reconstruct.io import Reconstruction

HAS_PTYCHODUS = importlib.util.find_spec("ptychodus") is not None
needs_ptychodus = pytest.mark.skipif(
    not HAS_PTYCHODUS, reason='ptychodus is not installed (pip install -e ".[interop]"); '
                              "CI installs it")

# Every key PtychoPINN's loaders read (hoidn/PtychoPINN): workflows.components.load_data reads
# xcoords, ycoords, xcoords_start, ycoords_start, diff3d (else diffraction), probeGuess and
# data.get('objectGuess'); raw_data.RawData.from_file reads diff3d, scan_index and objectGuess;
# metadata.MetadataManager reads the JSON string _metadata (physics_parameters.nphotons).
LOADER_KEYS = {"xcoords", "ycoords", "xcoords_start", "ycoords_start", "diff3d", "diffraction",
               "probeGuess", "objectGuess", "scan_index", "_metadata"}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    study = StudyConfig.from_dict(small_study_dict())
    d = tmp_path_factory.mktemp("interop")
    simulate_cell(study, "scaled", "1e5", "dense", d / "train.h5", d / "test.h5")
    return study, d


def _ptychopinn_load_data(path):
    """What PtychoPINN's load_data does with an NPZ (key accesses and layout rule, no grouping)."""
    data = np.load(path)  # allow_pickle=False, as PtychoPINN's loader
    diff_key = "diff3d" if "diff3d" in data else "diffraction"
    diff = data[diff_key]
    diff3d = np.transpose(diff, [2, 0, 1]) if diff.shape[0] < diff.shape[2] else diff
    return {"xcoords": data["xcoords"], "ycoords": data["ycoords"],
            "xcoords_start": data["xcoords_start"], "ycoords_start": data["ycoords_start"],
            "diff3d": diff3d, "probeGuess": data["probeGuess"],
            "objectGuess": data.get("objectGuess"), "scan_index": data["scan_index"],
            "metadata": json.loads(np.asarray(data["_metadata"]).item())}


def test_npz_has_ptychopinn_keys_and_conventions(cell, tmp_path):
    study, d = cell
    meta = export_npz(d / "test.h5", tmp_path / "t.npz", study.geometry)
    with np.load(tmp_path / "t.npz") as z:
        assert set(z.files) == LOADER_KEYS
    got = _ptychopinn_load_data(tmp_path / "t.npz")
    with Dataset(d / "test.h5") as ds:
        counts, pos = ds.read(), ds.positions
        np.testing.assert_array_equal(got["diff3d"], np.sqrt(counts))  # amplitude
        assert got["diff3d"].dtype == np.float32 and got["diff3d"].shape == (ds.n, ds.N, ds.N)
        np.testing.assert_array_equal(got["xcoords"], pos[:, 1])
        np.testing.assert_array_equal(got["ycoords"], pos[:, 0])
        np.testing.assert_array_equal(got["xcoords_start"], got["xcoords"])
        np.testing.assert_array_equal(got["ycoords_start"], got["ycoords"])
        np.testing.assert_array_equal(got["probeGuess"], ds.probe)
        np.testing.assert_array_equal(got["objectGuess"], ds.object)
        assert got["scan_index"].shape == (ds.n,) and not got["scan_index"].any()
        phys, extra = got["metadata"]["physics_parameters"], got["metadata"]["additional_parameters"]
        # nphotons is the mean counts per pattern (below the incident dose: the object absorbs)
        assert phys["nphotons"] == pytest.approx(counts.sum(axis=(1, 2)).mean(), rel=1e-12)
        assert 0.2e5 < phys["nphotons"] < 1e5
        assert extra["dose_photons_per_exposure"] == ds.dose == 1e5
        assert phys["N"] == ds.N and phys["gridsize"] == 1
    g = extra["geometry"]
    assert g["photon_energy_eV"] == 8000.0 and g["detector_distance_m"] == 2.0
    # lambda(8 keV) = 154.98 pm; dx = lambda z / (N p) = 154.98e-12 * 2 / (16 * 75e-6) = 258.3 nm
    assert g["object_pixel_size_m"] == pytest.approx(2.5830e-7, rel=1e-4)
    assert meta["physics_parameters"] == phys


def test_npz_round_trip_is_exact_and_bytes_are_stable(cell, tmp_path):
    _, d = cell
    export_npz(d / "test.h5", tmp_path / "a.npz")
    export_npz(d / "test.h5", tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    import_npz(tmp_path / "a.npz", tmp_path / "back.h5")
    with Dataset(d / "test.h5") as a, Dataset(tmp_path / "back.h5") as b:
        np.testing.assert_array_equal(a.read(), b.read())  # whole counts recovered exactly
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.probe, b.probe)
        np.testing.assert_array_equal(a.object, b.object)
        assert b.dose == a.dose
        assert b.attrs["overlap_measured"] == pytest.approx(a.attrs["overlap_measured"], abs=1e-12)


def test_npz_reconstruction_export_replaces_object(cell, tmp_path):
    _, d = cell
    with Dataset(d / "test.h5") as ds:
        rec = Reconstruction(object=np.full(ds.object.shape, 0.5 + 0.5j, np.complex64),
                             weight=np.ones(ds.object.shape, np.float32), arm="pinn_g1",
                             gridsize=1, dose=ds.dose, overlap_view="dense", n_patterns=ds.n,
                             wall_time_s=1.0, source="x")
    meta = export_npz(d / "test.h5", tmp_path / "r.npz", reconstruction=rec)
    with np.load(tmp_path / "r.npz") as z:
        np.testing.assert_array_equal(z["objectGuess"], rec.object)
    assert meta["additional_parameters"]["arm"] == "pinn_g1"
    assert meta["additional_parameters"]["objectGuess"] == "reconstruction"


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _arrays(n=20, N=16, H=64):
    rng = np.random.default_rng(0)
    y = rng.uniform(N, H - N, n)
    x = rng.uniform(N, H - N, n)
    return {"diff3d": np.sqrt(rng.poisson(5.0, (n, N, N))).astype(np.float32), "xcoords": x,
            "ycoords": y, "xcoords_start": x, "ycoords_start": y,
            "probeGuess": np.ones((N, N), np.complex64),
            "objectGuess": np.ones((H, H), np.complex64)}


def test_normalised_amplitudes_are_scaled_to_nphotons(tmp_path):
    a = _arrays()
    norm = a["diff3d"] / 7.0  # PtychoPINN's normalised amplitudes: not whole counts when squared
    meta = {"physics_parameters": {"nphotons": 1234.5}}
    p = _npz(tmp_path / "n.npz", **{**a, "diff3d": norm, "_metadata": np.array(json.dumps(meta))})
    src = open_npz(p)
    counts = np.concatenate([c for _, c in src.batches(7)])
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(1234.5, rel=1e-5)
    np.testing.assert_allclose(counts / counts.max(), norm**2 / (norm**2).max(), rtol=1e-5)
    p2 = _npz(tmp_path / "m.npz", **{**a, "diff3d": norm})
    with pytest.raises(DatasetError, match="nphotons"):
        list(open_npz(p2).batches(7))


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.pop("ycoords"), "missing key 'ycoords'"),
    (lambda a: a.pop("diff3d"), "missing key 'diff3d'"),
    (lambda a: a.update(diff3d=a["diff3d"].astype(np.uint16)), "'diff3d' has dtype uint16"),
    (lambda a: a.update(probeGuess=np.abs(a["probeGuess"])), "'probeGuess' has dtype float32"),
    (lambda a: a.update(xcoords=a["xcoords"][:-1]), "19 positions but 'diff3d' holds 20"),
    (lambda a: a.update(xcoords=a["xcoords"] + 100.0, xcoords_start=a["xcoords"] + 100.0),
     "outside the object"),
    (lambda a: a.update(probeGuess=np.ones((8, 8), np.complex64)), r"probe has shape \(8, 8\)"),
])
def test_bad_npz_files_are_refused_by_name(tmp_path, edit, match):
    a = _arrays()
    edit(a)
    p = _npz(tmp_path / "bad.npz", **a)
    with pytest.raises(DatasetError, match=match) as err:
        check_split(open_npz(p))
    assert "bad.npz" in str(err.value)


def test_not_an_npz_and_missing_object(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"no zip")
    with pytest.raises(DatasetError, match="junk.npz: not a readable NPZ"):
        open_npz(junk)
    a = _arrays()
    a.pop("objectGuess")
    src = open_npz(_npz(tmp_path / "noobj.npz", **a))
    assert src.object is None and src.object_shape[0] >= src.positions[:, 0].max() + 8
    with pytest.raises(DatasetError, match="no ground-truth object"):
        check_split(src, need_object=True)


# ------------------------------------------------------------------------------------ ptychodus
@needs_ptychodus
def test_ptychodus_round_trip_through_its_own_readers(cell, tmp_path):
    from ptychodus.api.io import load_diffraction_data, load_product
    from ptychodus.api.probe import ProbeGeometry

    from ptycho.interop.ptychodus import export_split, open_ptychodus

    _, d = cell
    geometry = GeometryConfig(photon_energy_eV=10000.0, detector_distance_m=3.0,
                              detector_pixel_size_m=55e-6)
    out = export_split(d / "test.h5", tmp_path / "test", geometry)
    product = load_product(out["product"])
    diffraction = load_diffraction_data(out["diffraction"])
    with Dataset(d / "test.h5") as ds:
        counts, pos, probe, obj, N = ds.read(), ds.positions, ds.probe, ds.object, ds.N
    H, W = obj.shape
    md = product.metadata
    assert (md.photon_energy_eV, md.detector_distance_m, md.probe_photon_count) == (1e4, 3.0, 1e5)
    assert json.loads(md.comments)["split"] == "test"
    g = product.object_.get_geometry()
    dx = object_pixel_size_m(geometry, N)  # lambda z / (N p), our own formula
    assert g.pixel_width_m == pytest.approx(dx, rel=1e-12) and g.pixel_height_m == g.pixel_width_m
    assert (g.center_x_m, g.center_y_m) == (0.0, 0.0)
    np.testing.assert_array_equal(product.object_.get_layer(0), obj)  # float32 exact
    np.testing.assert_array_equal(product.probes.get_array()[0, 0], probe)
    # metres in the object-centre frame: x_m = (cx - W/2) dx
    np.testing.assert_allclose(product.probe_positions.get_coordinates_x_m(),
                               (pos[:, 1] - W / 2) * dx, rtol=0, atol=1e-6 * dx)
    np.testing.assert_allclose(product.probe_positions.get_coordinates_y_m(),
                               (pos[:, 0] - H / 2) * dx, rtol=0, atol=1e-6 * dx)
    # ptychodus places the N x N patch of a position where we do: corner floor(c - N/2)
    bounds = ProbeGeometry(N, N, dx, dx)
    xs = g.map_probe_positions_to_object_x_px(product.probe_positions)
    ys = g.map_probe_positions_to_object_y_px(product.probe_positions)
    for k in range(0, len(pos), 7):
        b = bounds.resolve_patch_bounds(xs[k], ys[k])
        assert (b.y_slice.start, b.x_slice.start) == tuple(np.floor(pos[k] - N / 2).astype(int))
    np.testing.assert_array_equal(diffraction.get_patterns(), counts)
    assert diffraction.get_pixel_geometry().width_m == 55e-6
    # ... and back into our format
    src = open_ptychodus(out["product"], out["diffraction"])
    assert np.abs(src.positions - pos).max() < 1e-6
    np.testing.assert_array_equal(src.object, obj)
    np.testing.assert_array_equal(src.probe, probe)
    assert src.dose == 1e5
    np.testing.assert_array_equal(np.concatenate([c for _, c in src.batches(9)]), counts)


@needs_ptychodus
def test_ptychodus_reconstruction_product_round_trip(cell, tmp_path):
    from ptychodus.api.io import load_product

    from ptycho.interop.ptychodus import export_reconstruction, import_reconstruction

    _, d = cell
    with Dataset(d / "test.h5") as ds:
        rng = np.random.default_rng(1)
        obj = (rng.random(ds.object.shape) * np.exp(1j * rng.random(ds.object.shape)))
        rec = Reconstruction(object=obj.astype(np.complex64),
                             weight=np.ones(obj.shape, np.float32), arm="iterative", gridsize=1,
                             dose=ds.dose, overlap_view="dense", n_patterns=ds.n,
                             wall_time_s=2.5, source=str(d / "test.h5"))
    export_reconstruction(rec, d / "test.h5", tmp_path / "p.h5", losses=[3.0, 2.0, 1.5])
    assert [lv.value for lv in load_product(tmp_path / "p.h5").losses] == [3.0, 2.0, 1.5]
    back = import_reconstruction(tmp_path / "p.h5")
    np.testing.assert_array_equal(back.object, rec.object)
    assert (back.arm, back.dose, back.overlap_view) == ("iterative", 1e5, "dense")
    assert back.weight.shape == obj.shape and back.weight.max() > 0


@needs_ptychodus
def test_bad_ptychodus_pair_is_refused(cell, tmp_path):
    from ptycho.interop.ptychodus import export_split, open_ptychodus

    _, d = cell
    out = export_split(d / "test.h5", tmp_path / "t")
    with h5py.File(out["diffraction"], "r+") as f:
        p = f["patterns"][()]
        del f["patterns"], f["indexes"]
        f["patterns"], f["indexes"] = p[:-1], np.arange(len(p) - 1)
    with pytest.raises(DatasetError, match="pattern counts must match"):
        open_ptychodus(out["product"], out["diffraction"])
    (tmp_path / "junk.h5").write_bytes(b"x")
    with pytest.raises(DatasetError, match="junk.h5: not a readable ptychodus product"):
        open_ptychodus(tmp_path / "junk.h5", out["diffraction"])


def test_external_hdf5_split_opens(cell):
    from ptycho.config import ExternalFile

    _, d = cell
    src = open_split(ExternalFile(format="hdf5", path=str(d / "test.h5")))
    check_split(src, N=16, need_object=True)
    with pytest.raises(DatasetError, match="N = 32"):
        check_split(src, N=32)


def test_npz_zip_members_are_npy(cell, tmp_path):
    """Every member is a plain .npy (numpy.lib.format), readable without pickle."""
    _, d = cell
    export_npz(d / "test.h5", tmp_path / "z.npz")
    with zipfile.ZipFile(tmp_path / "z.npz") as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())
    with np.load(tmp_path / "z.npz", allow_pickle=False) as z:
        assert all(z[k] is not None for k in z.files)
