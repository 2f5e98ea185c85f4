"""The probe a study's arms are told (``data: probe_source``, docs/own-data.md): refinement on the
train split only, the files that carry the refined probe beside the given one, the workflow's
plan, bad settings; multi-mode probes through NPZ / ptychodus; exports with an arm's own probe
and positions (docs/exchange.md)."""

from __future__ import annotations

import importlib.util
import json
import re

import h5py
import numpy as np
import pytest
import yaml
from test_workflow import TINY, make_workdir, snakemake

from ptycho import api
from ptycho.config import ExternalFile, StudyConfig
from ptycho.data.dataset import Dataset, DatasetMeta, DatasetWriter
from ptycho.data.probe_file import (
    RefinedProbe,
    apply_probe,
    as_modes,
    file_sha256,
    probe_sha256,
    read_probe_file,
    write_probe_file,
)
from ptycho.errors import ConfigError, DatasetError
from ptycho.interop.external import open_split
from ptycho.interop.npz import PROBE_MODES_KEY, export_npz, import_npz, open_npz
from ptycho.physics.errors import coherent_modes
from ptycho.physics.probe import simulated_probe
from ptycho.reconstruct.io import Reconstruction

HAS_PTYCHI = importlib.util.find_spec("ptychi") is not None
HAS_PTYCHODUS = importlib.util.find_spec("ptychodus") is not None


def _tiny(**over) -> dict:
    d = yaml.safe_load(TINY.read_text())
    d.update(over)
    return d


# ------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize("data,key", [
    ({"probe_source": "train_refined", "probe_refinement": {"iterations": 0}},
     "data/probe_refinement/iterations"),
    ({"probe_source": "train_refined", "probe_refinement": {"batch_size": 0}},
     "data/probe_refinement/batch_size"),
    ({"probe_source": "train_refined", "probe_refinement": {"noise_model": "laplace"}},
     "data/probe_refinement/noise_model"),
    ({"probe_source": "refined"}, "data/probe_source"),
    ({"probe_source": "train_refined", "probe_refinement": {"epochs": 3}},
     "data/probe_refinement"),
])
def test_bad_probe_settings_name_the_key(data, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        StudyConfig.from_dict(_tiny(data=data))


def test_given_probe_records_nothing_new():
    """The default leaves the resolved study (written into every dataset file) as it was."""
    given = StudyConfig.from_dict(_tiny())
    assert given.data.probe_source == "given" and not given.data.refines_probe
    assert "probe_source" not in given.to_dict()["data"]
    assert "probe_refinement" not in given.to_dict()["data"]
    refined = StudyConfig.from_dict(_tiny(data={"probe_source": "train_refined"}))
    assert refined.data.refines_probe
    assert refined.to_dict()["data"]["probe_refinement"] == {
        "iterations": 30, "batch_size": 32, "probe_modes": 0, "noise_model": "poisson"}


# ------------------------------------------------------------------------- the workflow's plan
def _jobs(out: str, rule: str) -> list[dict]:
    """The dry run's jobs of ``rule`` with their input and output lists."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", out):
        if block.startswith(f"rule {rule}:"):
            fields = dict(re.findall(r"^\s+(input|output): (.*)$", block, re.MULTILINE))
            jobs.append({k: [p.strip() for p in v.split(",")] for k, v in fields.items()})
    return jobs


def test_refinement_reads_only_the_train_split(tmp_path):
    study = _tiny(study="tinyref", data={"probe_source": "train_refined"})
    wd = make_workdir(tmp_path, study)
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    refine = _jobs(out, "refine_train_probe")
    assert len(refine) == 2  # one per cell
    for job in refine:
        assert len(job["input"]) == 1 and job["input"][0].endswith("/given/train.h5")
        assert not any("test" in p for p in job["input"])
        assert job["output"][0].endswith("/probe/refined_probe.h5")
    apply = _jobs(out, "apply_refined_probe")
    assert len(apply) == 2
    for job in apply:
        assert {p.rsplit("/", 1)[-1] for p in job["output"]} == {"train.h5", "test.h5"}
        assert not any("/given/" in p for p in job["output"])
    # every arm reads the files with the refined probe
    for rule in ("train_pinn", "reconstruct_iterative"):
        for job in _jobs(out, rule):
            assert not any("/given/" in p for p in job["input"]), (rule, job)
    # the given probe (default): no refinement, simulation writes data/<cell>/ directly
    wd2 = make_workdir(tmp_path / "given", _tiny())
    r2 = snakemake(wd2, "-n", "phase_g_scaled", timeout=180)
    assert r2.returncode == 0 and "refine_train_probe" not in r2.stdout + r2.stderr


# ---------------------------------------------------------------- refinement on the train split
@pytest.fixture(scope="module")
def defocus_cell(tmp_path_factory):
    """A tiny-study cell (N = 16, 64 x 64 object, dose 1e5, dense) whose files tell the arms a
    probe with a 25% defocus error (docs/robustness.md)."""
    d = tmp_path_factory.mktemp("probe_source")
    study = api.load_study(_tiny(errors={"probe": {"kind": "defocus", "levels": [0, 0.25]}},
                                 data={"probe_source": "train_refined"}))
    cell = api.simulate_cell(study, "scaled", 1e5, "dense", d / "given", figure=False,
                             error_level="probe25")
    return study, cell, d


@pytest.mark.skipif(not HAS_PTYCHI, reason='pty-chi not installed (pip install -e ".[iterative]")')
def test_train_split_refinement_improves_the_probe_and_the_files_carry_it(defocus_cell):
    study, cell, d = defocus_cell
    probe_dir = d / "root" / "data" / "1e5_dense_probe25_r0" / "probe"
    res = api.refine_probe(study, cell.train, probe_dir / "refined_probe.h5",
                           figure=probe_dir / "refined_probe.png")
    info = res.info
    # 30 LSQML epochs (Poisson likelihood) on the 234 train patterns: 0.250 -> 0.101 measured
    assert info["given_probe_error"] == pytest.approx(0.25, rel=0.02)
    assert info["refined_probe_error"] < 0.15
    assert len(info["cost_history"]) == 30 and info["cost_history"][-1] < info["cost_history"][0]
    assert res.figure.stat().st_size > 10_000
    rp = read_probe_file(res.path)
    assert rp.train_sha256 == file_sha256(cell.train) == res.train_sha256
    assert rp.settings["split"] == "train" and rp.settings["iterations"] == 30
    with Dataset(cell.train) as ds:
        given = ds.probe
    assert res.given_sha256 == probe_sha256(given) == rp.given_sha256
    # normalised to the given probe's power
    assert np.sum(np.abs(rp.probe) ** 2) == pytest.approx(np.sum(np.abs(given) ** 2), rel=1e-5)

    out = api.apply_probe(res.path, cell.train, cell.test, d / "applied")
    for split, path, src in (("train", out.train, cell.train), ("test", out.test, cell.test)):
        rec = out.summary[split]
        with Dataset(path) as a, Dataset(src) as g, h5py.File(path, "r") as f:
            np.testing.assert_array_equal(a.probe, rp.probe[0])  # the arms' nominal probe
            np.testing.assert_array_equal(f["given_probe"][()], g.probe)
            np.testing.assert_array_equal(a.read(), g.read())  # counts, positions, object kept
            np.testing.assert_array_equal(a.positions, g.positions)
            np.testing.assert_array_equal(a.object, g.object)
            assert f.attrs["probe_source"] == "train_refined"
            assert f.attrs["probe_sha256"] == res.sha256 == probe_sha256(a.probe)
            assert f.attrs["given_probe_sha256"] == probe_sha256(g.probe)
            assert a.attrs["probe_error"] == g.attrs["probe_error"]  # the level's record stays
            assert f.attrs["refined_probe_error"] == pytest.approx(info["refined_probe_error"])
        assert rec["refined_probe_error"] < rec["given_probe_error"] - 0.1
    # the provenance record names the probe each cell's arms were told
    from ptycho.reporting.provenance import refined_probes

    prov = refined_probes(d / "root")["1e5_dense_probe25_r0"]
    assert prov["probe_sha256"] == res.sha256 and prov["train_sha256"] == res.train_sha256


def test_refinement_refuses_a_test_split_and_a_foreign_probe(defocus_cell, tmp_path):
    _, cell, _ = defocus_cell
    from ptycho.config import ProbeRefinementConfig
    from ptycho.reconstruct.probe_refine import refine_train_probe

    with pytest.raises(DatasetError, match="train split only"):
        refine_train_probe(cell.test, ProbeRefinementConfig(), tmp_path / "p.h5")
    assert not (tmp_path / "p.h5").exists()
    other = simulated_probe(16, aperture_radius=0.2)
    fake = RefinedProbe(probe=other, given_probe=other, train_file="x", train_sha256="0")
    write_probe_file(tmp_path / "foreign.h5", fake)
    with pytest.raises(DatasetError, match="given_probe_sha256 differs"):
        apply_probe(cell.test, tmp_path / "foreign.h5", tmp_path / "t.h5")
    assert not (tmp_path / "t.h5").exists()


def test_probe_modes_shapes():
    P = simulated_probe(16)
    modes = coherent_modes(P, [0.8, 0.2])
    assert as_modes(P).shape == (1, 16, 16)
    np.testing.assert_array_equal(as_modes(modes[None]), modes)  # ptychodus (1, M, N, N)
    with pytest.raises(DatasetError, match="expected"):
        as_modes(np.stack([modes, modes]))  # two coherent (OPR) modes
    with pytest.raises(DatasetError, match="complex"):
        as_modes(np.abs(P))


# ------------------------------------------------------------------- multi-mode probes, exports
def _modes_dataset(path, M=3, N=16, H=64, n=30, split="test"):
    rng = np.random.default_rng(4)
    modes = coherent_modes(simulated_probe(N), [0.7, 0.2, 0.1][:M]).astype(np.complex64)
    pos = rng.uniform(N, H - N, (n, 2))
    obj = np.exp(1j * rng.uniform(-1, 1, (H, H))).astype(np.complex64)
    meta = DatasetMeta(dose=1e4, overlap_target=0.7, overlap_measured=0.7, overlap_area=0.0,
                       probe_diameter=6.0, split=split, seed=0,
                       config={"overlap_view": "dense", "object_size": [H, H]})
    with DatasetWriter(path, n, pos, modes[0], obj, meta,
                       extras={"probe_modes": modes}) as w:
        w.write(rng.poisson(3.0, (n, N, N)).astype(np.float32))
    return modes, pos


def test_npz_round_trip_keeps_every_probe_mode(tmp_path):
    modes, _ = _modes_dataset(tmp_path / "test.h5")
    meta = export_npz(tmp_path / "test.h5", tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        np.testing.assert_array_equal(z["probeGuess"], modes[0])  # PtychoPINN reads one mode
        np.testing.assert_array_equal(z[PROBE_MODES_KEY], modes)
    assert meta["additional_parameters"]["probe_modes"] == 3
    assert open_npz(tmp_path / "t.npz").probe_modes.shape == (3, 16, 16)
    import_npz(tmp_path / "t.npz", tmp_path / "back.h5")
    with Dataset(tmp_path / "back.h5") as b:
        np.testing.assert_array_equal(b.probe_modes, modes)
        np.testing.assert_array_equal(b.probe, modes[0])
    # this project's HDF5 as an external split keeps them too
    src = open_split(ExternalFile(format="hdf5", path=str(tmp_path / "back.h5")))
    np.testing.assert_array_equal(src.probe_modes, modes)
    # a one-mode file has no extra key (PtychoPINN's key set unchanged)
    with h5py.File(tmp_path / "test.h5", "a") as f:
        del f["probe_modes"]
    export_npz(tmp_path / "test.h5", tmp_path / "one.npz")
    with np.load(tmp_path / "one.npz") as z:
        assert PROBE_MODES_KEY not in z.files


def test_npz_with_inconsistent_modes_is_refused(tmp_path):
    _modes_dataset(tmp_path / "test.h5")
    export_npz(tmp_path / "test.h5", tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays[PROBE_MODES_KEY] = arrays[PROBE_MODES_KEY][::-1].copy()
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match="bad.npz.*first mode"):
        open_npz(tmp_path / "bad.npz")


def _recon(modes=None, positions=None, n=30, H=64):
    return Reconstruction(object=np.full((H, H), 0.9 + 0.1j, np.complex64),
                          weight=np.ones((H, H), np.float32), arm="iterative", gridsize=1,
                          dose=1e4, overlap_view="dense", n_patterns=n, wall_time_s=1.0,
                          source="recon.h5", probe=modes, positions=positions)


def test_export_carries_the_arms_own_probe_and_positions(tmp_path):
    nominal, pos = _modes_dataset(tmp_path / "test.h5")
    final = (nominal * np.exp(0.3j)).astype(np.complex64)[:2]
    moved = pos + 0.25
    meta = export_npz(tmp_path / "test.h5", tmp_path / "arm.npz",
                      reconstruction=_recon(final, moved))
    with np.load(tmp_path / "arm.npz") as z:
        np.testing.assert_array_equal(z[PROBE_MODES_KEY], final)
        np.testing.assert_array_equal(z["probeGuess"], final[0])
        np.testing.assert_array_equal(z["ycoords"], moved[:, 0])
        np.testing.assert_array_equal(z["xcoords"], moved[:, 1])
    extra = meta["additional_parameters"]
    assert extra["probe_from"] == "the iterative arm's final probe"
    assert extra["positions_from"] == "the iterative arm's final positions"
    assert extra["probe_sha256"] == probe_sha256(final)
    # an arm that refined nothing: the split's nominal probe (all modes) and positions
    meta = export_npz(tmp_path / "test.h5", tmp_path / "nom.npz", reconstruction=_recon())
    with np.load(tmp_path / "nom.npz") as z:
        np.testing.assert_array_equal(z[PROBE_MODES_KEY], nominal)
        np.testing.assert_array_equal(z["ycoords"], pos[:, 0])
    assert meta["additional_parameters"]["probe_from"].startswith("nominal")
    with pytest.raises(DatasetError, match="positions"):
        export_npz(tmp_path / "test.h5", tmp_path / "x.npz",
                   reconstruction=_recon(positions=moved[:5]))


@pytest.mark.skipif(not HAS_PTYCHODUS, reason='ptychodus is not installed (pip install -e '
                                              '".[interop]"); CI installs it')
def test_ptychodus_round_trip_keeps_modes_and_the_arms_probe(tmp_path):
    from ptychodus.api.io import load_product

    from ptycho.interop.ptychodus import (
        export_reconstruction,
        export_split,
        import_reconstruction,
        open_ptychodus,
    )

    modes, pos = _modes_dataset(tmp_path / "test.h5")
    out = export_split(tmp_path / "test.h5", tmp_path / "split")
    assert np.asarray(load_product(out["product"]).probes.get_array()).shape == (1, 3, 16, 16)
    src = open_ptychodus(out["product"], out["diffraction"])
    np.testing.assert_allclose(src.probe_modes, modes, rtol=0, atol=1e-7)
    np.testing.assert_allclose(src.positions, pos, atol=1e-6)
    final = (modes * np.exp(0.3j)).astype(np.complex64)[:2]
    export_reconstruction(_recon(final, pos + 0.25), tmp_path / "test.h5",
                          tmp_path / "arm" / "product.h5")
    back = import_reconstruction(tmp_path / "arm" / "product.h5")
    np.testing.assert_allclose(back.probe, final, atol=1e-7)
    np.testing.assert_allclose(back.positions, pos + 0.25, atol=1e-6)
    notes = json.loads(load_product(tmp_path / "arm" / "product.h5").metadata.comments)
    assert notes["probe_from"] == "the iterative arm's final probe"
