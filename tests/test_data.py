"""Dataset contract, simulation determinism, split invariant, grouping, NPZ round trip."""

import hashlib

import h5py
import numpy as np
import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig
from ptycho.data.dataset import Dataset
from ptycho.data.generate import simulate_cell
from ptycho.data.grouping import group_offsets, make_groups
from ptycho.data.split import shared_pixels
from ptycho.errors import ConfigError, DatasetError
from ptycho.interop.npz import export_npz, import_npz
from ptycho.physics.scan import measured_overlap


def _sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    study = StudyConfig.from_dict(small_study_dict())
    d = tmp_path_factory.mktemp("cell")
    out = {}
    for view in ("dense", "sparse"):
        tr, te = d / f"{view}_train.h5", d / f"{view}_test.h5"
        out[view] = (simulate_cell(study, "scaled", "1e5", view, tr, te), tr, te)
    return study, d, out


def test_dataset_contract(cell):
    _study, _, out = cell
    summary, tr, _te = out["dense"]
    with Dataset(tr) as ds:
        assert ds.N == 16 and ds.split == "train" and ds.dose == 1e5
        assert ds.n == summary["splits"]["train"]["n_patterns"] > 20
        a = ds.attrs
        for key in ("dose", "overlap_target", "overlap_measured", "split", "seed", "N",
                    "format_version", "config"):
            assert key in a
        assert ds.positions.dtype == np.float64 and ds.positions.shape == (ds.n, 2)
        assert ds.probe.dtype == np.complex64 and ds.object.shape == (96, 80)
        counts = ds.read([3, 0, 3])
        assert counts.dtype == np.float32 and counts.shape == (3, 16, 16)
        np.testing.assert_array_equal(counts[0], counts[2])
        assert np.all(counts == np.round(counts)) and counts.min() >= 0
        # mean photons per pattern below the dose (absorbing object) but of its order
        assert 0.2 * 1e5 < counts.sum(axis=(1, 2)).mean() < 1e5
        batches = list(ds.iter_batches(7))
        assert sum(len(i) for i, _ in batches) == ds.n
    with h5py.File(tr) as f:
        assert f["diffraction"].chunks[0] <= 32


@pytest.mark.parametrize("view,target", [("dense", 0.7), ("sparse", 0.2)])
def test_overlap_and_split_invariant(cell, view, target):
    _, _, out = cell
    summary, tr, te = out[view]
    assert abs(summary["overlap_measured"] - target) < 0.05
    with Dataset(tr) as a, Dataset(te) as b:
        assert shared_pixels(a.object.shape, a.positions, b.positions, a.N) == 0
        assert a.positions[:, 0].max() < b.positions[:, 0].min()
        both = np.concatenate([a.positions, b.positions])
        assert abs(measured_overlap(both, a.attrs["probe_diameter"]) - target) < 0.05


def test_same_seed_bit_identical_other_seed_differs(cell, tmp_path):
    study, _, out = cell
    _, tr, te = out["dense"]
    simulate_cell(study, "scaled", "1e5", "dense", tmp_path / "a.h5", tmp_path / "b.h5")
    assert _sha(tmp_path / "a.h5") == _sha(tr) and _sha(tmp_path / "b.h5") == _sha(te)
    other = StudyConfig.from_dict(small_study_dict(seeds={"simulation": 99}))
    simulate_cell(other, "scaled", "1e5", "dense", tmp_path / "c.h5", tmp_path / "d.h5")
    with Dataset(tmp_path / "c.h5") as c, Dataset(tr) as a:
        assert not np.array_equal(c.read([0]), a.read([0]))


def test_same_positions_across_doses(cell, tmp_path):
    study, _, out = cell
    _, tr, _ = out["sparse"]
    simulate_cell(study, "scaled", "1e3", "sparse", tmp_path / "a.h5", tmp_path / "b.h5")
    with Dataset(tmp_path / "a.h5") as lo, Dataset(tr) as hi:
        np.testing.assert_array_equal(lo.positions, hi.positions)
        assert lo.read([0]).sum() < hi.read([0]).sum() / 10


def _two_replicate_study():
    d = small_study_dict()
    d["scales"]["scaled"]["replicates"] = 2
    return StudyConfig.from_dict(d)


def test_replicates_differ_in_noise_and_share_positions(cell, tmp_path):
    _, _, out = cell
    _, tr, te = out["dense"]
    study = _two_replicate_study()
    files = {}
    for k in (0, 1):
        files[k] = (tmp_path / f"r{k}_tr.h5", tmp_path / f"r{k}_te.h5")
        simulate_cell(study, "scaled", "1e5", "dense", *files[k], replicate=k)
    for split, base in ((0, tr), (1, te)):
        with Dataset(files[0][split]) as r0, Dataset(files[1][split]) as r1, Dataset(base) as one:
            assert (r0.replicate, r1.replicate, one.replicate) == (0, 1, 0)
            np.testing.assert_array_equal(r0.positions, r1.positions)
            np.testing.assert_array_equal(r0.object, r1.object)
            # replicate 0 of a 2-replicate study draws the noise of a study without replicates
            np.testing.assert_array_equal(r0.read(), one.read())
            a, b = r0.read(), r1.read()
            assert not np.array_equal(a, b)
            # same expected counts: the photon totals agree to a few Poisson standard deviations
            ta, tb = a.sum(dtype=np.float64), b.sum(dtype=np.float64)
            assert abs(ta - tb) < 6 * np.sqrt(ta)
            assert r0.attrs["fluence"] == r1.attrs["fluence"]
    # the same replicate again: bit-identical files
    simulate_cell(study, "scaled", "1e5", "dense", tmp_path / "again_tr.h5",
                  tmp_path / "again_te.h5", replicate=1)
    assert _sha(tmp_path / "again_tr.h5") == _sha(files[1][0])
    assert _sha(tmp_path / "again_te.h5") == _sha(files[1][1])
    with pytest.raises(ConfigError, match="replicate 2 is outside"):
        simulate_cell(study, "scaled", "1e5", "dense", tmp_path / "x.h5", tmp_path / "y.h5",
                      replicate=2)


def test_replicate_zero_noise_is_the_unlabelled_stream(cell):
    """Replicate 0 keeps the streams a study had before replicates existed: its counts are
    Poisson draws of the stream seeded by (simulation seed, 'noise', dose, view, split)."""
    from ptycho.physics.forward import simulate_expected
    from ptycho.physics.noise import poisson_counts
    from ptycho.rng import rng_for

    study, _, out = cell
    _, _, te = out["sparse"]
    with Dataset(te) as ds:
        pos, probe, obj, counts = ds.positions, ds.probe, ds.object, ds.read()
    rng = rng_for(study.seeds.simulation, "noise", "1e5", "sparse", "test")
    chunk = study.scale("scaled").chunk_size
    expect = np.concatenate([poisson_counts(simulate_expected(obj, probe, pos[s : s + chunk], 1e5),
                                            rng) for s in range(0, len(pos), chunk)])
    np.testing.assert_array_equal(counts, expect)


def test_datasets_record_their_fluence(cell, tmp_path):
    from ptycho.physics.illumination import scan_fluence

    _, _, out = cell
    summary, _, te = out["dense"]
    with Dataset(te) as ds:
        a = ds.attrs
        ref = scan_fluence(ds.object_shape, ds.positions, ds.probe, ds.dose)
    assert a["fluence"] == ref["photons_per_px"] == summary["splits"]["test"]["fluence"]["photons_per_px"]
    assert a["exposures_per_px"] == pytest.approx(a["fluence"] / 1e5)
    assert "fluence_per_m2" not in a  # no pixel size in the study
    with Dataset(out["sparse"][2]) as sparse:
        # at one dose the dense scan deposits several times the fluence of the sparse one
        assert a["fluence"] > 3 * sparse.attrs["fluence"]
    d = small_study_dict()
    d["scales"]["scaled"]["pixel_size_m"] = 1e-8
    simulate_cell(StudyConfig.from_dict(d), "scaled", "1e5", "dense", tmp_path / "a.h5",
                  tmp_path / "b.h5")
    with Dataset(tmp_path / "b.h5") as ds:
        b = ds.attrs
    assert b["pixel_size_m"] == 1e-8 and b["fluence"] == a["fluence"]
    assert b["fluence_per_m2"] == pytest.approx(a["fluence"] / 1e-16)


def test_grouping(cell):
    _, _, out = cell
    _, tr, _ = out["dense"]
    with Dataset(tr) as ds:
        pos, N = ds.positions, ds.N
    rng = np.random.default_rng(0)
    g = make_groups(pos, 2, 7, N, rng)
    assert g.shape == (len(pos), 4)
    np.testing.assert_array_equal(g[:, 0], np.arange(len(pos)))
    assert all(len(set(row)) == 4 for row in g)
    off = group_offsets(pos, g)
    assert np.all(np.abs(off) < N / 2)
    # members are among the 7 nearest neighbours of the seed
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    kth = np.sort(d, axis=1)[:, 7]
    assert np.all(d[np.arange(len(pos))[:, None], g[:, 1:]] <= kth[:, None] + 1e-9)
    np.testing.assert_array_equal(g, make_groups(pos, 2, 7, N, np.random.default_rng(0)))
    assert make_groups(pos, 1, 7, N, rng).shape == (len(pos), 1)
    with pytest.raises(ConfigError, match="gridsize"):
        make_groups(pos, 3, 9, N, rng)
    with pytest.raises(ConfigError, match="K = 3"):
        make_groups(pos, 2, 3, N, rng)


def test_grouping_of_a_too_sparse_scan_repeats_the_seed(caplog):
    N = 16
    # a 3 x 3 grid 6 px apart (every member has >= 3 neighbours within N/2 = 8 px), an isolated
    # position and an isolated pair
    grid = [[20.0 + 6 * i, 20.0 + 6 * j] for i in range(3) for j in range(3)]
    pos = np.array(grid + [[80.0, 20.0], [100.0, 100.0], [100.0, 106.0]])
    with caplog.at_level("WARNING", logger="ptycho.data.grouping"):
        g = make_groups(pos, 2, 4, N, np.random.default_rng(1))
    assert g.shape == (12, 4)
    assert all(len(set(row)) == 4 for row in g[:9])  # the grid groups normally
    np.testing.assert_array_equal(g[9], [9, 9, 9, 9])  # nobody within N/2: the seed four times
    np.testing.assert_array_equal(g[10], [10, 11, 10, 10])  # its one neighbour, then the seed
    np.testing.assert_array_equal(g[11], [11, 10, 11, 11])
    assert np.all(np.abs(group_offsets(pos, g)) < N / 2)
    assert "3 of 12 positions" in caplog.text


def test_npz_round_trip(cell, tmp_path):
    _, _, out = cell
    _, _, te = out["sparse"]
    export_npz(te, tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz") as z:
        assert {"diffraction", "diff3d", "xcoords", "ycoords", "xcoords_start", "ycoords_start",
                "probeGuess", "objectGuess"} <= set(z.files)
    import_npz(tmp_path / "x.npz", tmp_path / "y.h5", dose=1e5)
    with Dataset(te) as a, Dataset(tmp_path / "y.h5") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        np.testing.assert_array_equal(a.positions, b.positions)
    with pytest.raises(DatasetError, match="records a dose of 100000"):
        import_npz(tmp_path / "x.npz", tmp_path / "z.h5", dose=1e3)


def _corrupt(src, dst, edit):
    import shutil

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def test_reader_rejects_bad_files(cell, tmp_path):
    _, _, out = cell
    _, tr, _ = out["sparse"]

    def wrong_dtype(f):
        d = f["diffraction"][()]
        del f["diffraction"]
        f["diffraction"] = d.astype(np.int32)

    def wrong_shape(f):
        del f["positions"]
        f["positions"] = np.zeros((3, 3))

    def no_probe(f):
        del f["probe"]

    for edit, msg in ((wrong_dtype, "dtype int32"), (wrong_shape, "'/positions' has shape"),
                      (no_probe, "'/probe'")):
        p = _corrupt(tr, tmp_path / f"{edit.__name__}.h5", edit)
        with pytest.raises(DatasetError, match=msg) as e:
            Dataset(p)
        assert str(p) in str(e.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        Dataset(junk)
    with pytest.raises(DatasetError, match="not found"):
        Dataset(tmp_path / "missing.h5")


def test_failed_simulation_leaves_no_file(tmp_path):
    study = StudyConfig.from_dict(small_study_dict(object={"source": "file", "path": str(tmp_path / "nope.h5")}))
    with pytest.raises(DatasetError, match="nope.h5"):
        simulate_cell(study, "scaled", "1e3", "dense", tmp_path / "a.h5", tmp_path / "b.h5")
    assert list(tmp_path.iterdir()) == []
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    study = StudyConfig.from_dict(small_study_dict(object={"source": "file", "path": str(bad)}))
    with pytest.raises(DatasetError, match="bad.npz"):
        simulate_cell(study, "scaled", "1e3", "dense", tmp_path / "a.h5", tmp_path / "b.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_object_and_probe_from_file(tmp_path):
    from ptycho.physics.object import skimage_object
    from ptycho.physics.probe import simulated_probe

    obj = skimage_object((96, 80), "coins", "camera")
    np.savez(tmp_path / "obj.npz", objectGuess=obj)
    with h5py.File(tmp_path / "probe.h5", "w") as f:
        f["probe"] = simulated_probe(16, 0.2, 2.0)
    study = StudyConfig.from_dict(small_study_dict(
        object={"source": "file", "path": str(tmp_path / "obj.npz")},
        probe={"source": "file", "path": str(tmp_path / "probe.h5")}))
    simulate_cell(study, "scaled", "1e3", "sparse", tmp_path / "a.h5", tmp_path / "b.h5")
    with Dataset(tmp_path / "a.h5") as ds:
        np.testing.assert_array_equal(ds.object, obj)
    with h5py.File(tmp_path / "probe32.h5", "w") as f:
        f["probe"] = simulated_probe(32)
    study = StudyConfig.from_dict(small_study_dict(probe={"source": "file", "path": str(tmp_path / "probe32.h5")}))
    with pytest.raises(DatasetError, match=r"probe has shape \(32, 32\), expected \(16, 16\)"):
        simulate_cell(study, "scaled", "1e3", "sparse", tmp_path / "c.h5", tmp_path / "d.h5")
