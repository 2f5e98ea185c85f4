"""The iterative arm (pty-chi LSQML).

Importing torch / pty-chi after TensorFlow segfaults (docs/conventions.md, "Two frameworks, two
processes"), so all pty-chi work runs in a subprocess (tests/_ptychi_worker.py) that writes its numbers to JSON; this
module imports neither framework. Bad-input checks fail before pty-chi is imported, so they run
here directly or through the workflow script in a cheap subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import run_worker

from ptycho.config import IterativeConfig
from ptycho.data.dataset import DatasetMeta, DatasetWriter
from ptycho.errors import ConfigError, DatasetError, PtychoError

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_ptychi_worker.py")
SCRIPT = ROOT / "workflow" / "scripts" / "reconstruct_iterative.py"

needs_ptychi = pytest.mark.skipif(importlib.util.find_spec("ptychi") is None,
                                  reason='pty-chi not installed (pip install -e ".[iterative]")')


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    return run_worker(WORKER, tmp_path_factory.mktemp("ptychi"))


# ----------------------------------------------------------------------------- pty-chi (subprocess)
@needs_ptychi
def test_ptychi_forward_model_equals_our_expected_counts(worker):
    f = worker["forward"]
    assert f["integer_max_rel_err"] < 1e-5  # float32 precision at integer positions
    # fractional positions: pty-chi shifts the probe, we shift the object (same up to probe edges)
    assert f["fractional_rel_l2"] < 0.02
    assert f["total_ratio"] == pytest.approx(1.0, abs=2e-3)
    # dose scale: a transparent object gives exactly D photons per pattern
    assert f["flat_photons_per_pattern"] == pytest.approx([f["dose"]] * 2, rel=1e-5)
    assert f["peak_pixel_ours"] == f["peak_pixel_theirs"] == [16, 16]  # DC at (N/2, N/2)


@needs_ptychi
def test_lsqml_recovers_phase_noise_free_dense(worker):
    r = worker["recovery"]
    assert r["phase_ssim"] > 0.95
    assert r["flat_start_phase_ssim"] < 0.5  # the start is flat, far from the truth
    assert r["object_shape"] == [96, 96]
    assert r["zero_outside_coverage"] and r["covered_nonzero"]
    assert r["weight_equals_illumination"]
    info = r["info"]
    assert info["iterations"] == 100 and info["noise_model"] == "gaussian"
    assert info["refine_probe"] is False and info["device"] == "cpu"
    assert info["initial_object"] == "flat (ones)"
    costs = info["cost_history"]
    assert len(costs) == 100 and all(np.isfinite(costs))
    assert costs[-1] < 0.01 * costs[0]
    assert r["arm"] == "iterative" and r["gridsize"] == 1 and r["dose"] == 1e9
    assert r["n_patterns_attr"] == r["n_patterns"]
    assert r["overlap_view"] == "dense"  # from the dataset's config when not given


@needs_ptychi
def test_orientation_no_flip_or_transpose(worker):
    o = worker["orientation"]
    # the test object has no symmetry: its flipped / transposed versions differ from it
    assert max(abs(v) for v in o["truth_self_corr_variants"].values()) < 0.5
    assert all(abs(s) < 1.0 for s in o["shift"])
    assert o["corr_truth"] > 0.95
    worst = max(o["corr_variants"].values())
    assert worst < 0.5 and o["corr_truth"] - worst > 0.45


@needs_ptychi
def test_workflow_script_writes_reconstruction(worker):
    s = worker["script"]
    assert s["exists"] and s["arm"] == "iterative"
    assert s["overlap_view"] == "sparse"  # taken from params.overlap
    assert s["iterations"] == s["n_costs"] == 3
    assert s["shape"] == [80, 80]
    assert s["snapshot_epochs"] == [1, 2, 3]  # the default 1-2-5 sequence below a 3-epoch budget


# ----------------------------------------------------------------------------- snapshots
@needs_ptychi
def test_snapshots_at_requested_epochs_during_one_solve(worker):
    s = worker["snapshots"]
    assert s["epochs"] == s["info_epochs"] == [1, 2, 5, 10, 20, 50, 100]
    assert all(b > a for a, b in zip(s["wall_time_s"], s["wall_time_s"][1:]))
    assert s["wall_time_s"][-1] == s["wall_time_attr"]  # the last snapshot is the final object
    assert s["last_equals_object"]
    # noise-free dense data: the flat start converges (phase SSIM 0.12 after 1 epoch, 0.99 at 100)
    assert s["phase_ssim"][0] < 0.3 and s["phase_ssim"][-1] > 0.95
    assert s["phase_ssim"][-1] > s["phase_ssim"][3] > s["phase_ssim"][0]
    # pausing the solve at other epochs does not change it
    assert s["paused_epochs"] == [1, 3, 7, 30]
    assert s["pause_max_abs_diff"] == 0.0


@needs_ptychi
def test_last_snapshot_metrics_equal_final_object_metrics(worker, tmp_path):
    from ptycho.evaluation import evaluate_reconstruction

    s = worker["snapshots"]
    m = evaluate_reconstruction(s["recon"], s["test"], tmp_path / "m.json", tmp_path / "a.h5")
    snaps = m.snapshots
    assert [x["epoch"] for x in snaps] == s["epochs"]
    assert [x["wall_time_s"] for x in snaps] == s["wall_time_s"]
    assert snaps[-1]["metrics"] == m.metrics  # identical numbers, same code path
    assert snaps[0]["metrics"]["phase"]["ssim"] < snaps[-1]["metrics"]["phase"]["ssim"] - 0.5
    assert json.loads((tmp_path / "m.json").read_text())["snapshots"][-1]["epoch"] == 100


# ----------------------------------------------------------------------------- hybrid start
@needs_ptychi
def test_hybrid_first_epoch_is_closer_to_the_network_output_than_to_flat(worker):
    h = worker["hybrid"]
    assert h["arm"] == "hybrid" and h["epochs"] == [1, 5]
    # the stand-in network output is an unrelated object: only the start explains closeness to it
    # (measured: 0.108 to the network output, 0.384 to flat; the flat start's epoch 1: 0.256)
    assert h["first_to_network"] < 0.5 * h["first_to_flat"]
    assert h["first_to_network"] < 0.5 * h["flat_first_to_network"]
    assert h["first_to_network"] < 0.5 * h["first_to_truth"]


@needs_ptychi
def test_hybrid_records_its_start_and_includes_network_time(worker):
    from ptycho.reconstruct.io import fill_unlit, object_sha256, read_reconstruction

    h = worker["hybrid"]
    info = h["info"]
    net = read_reconstruction(h["network_recon"])
    assert info["start_arm"] == "pinn_g1" and info["start_source"] == h["network_recon"]
    assert info["initial_object"] == "network reconstruction (pinn_g1)"
    assert info["start_object_sha256"] == object_sha256(fill_unlit(net.object, net.weight))
    with h5py.File(h["test"], "r") as f:
        truth = f["object"][()]
    assert info["start_object_sha256"] != object_sha256(truth)
    assert info["start_object_sha256"] != object_sha256(fill_unlit(truth, net.weight))
    # wall time = the network's inference (2.5 s recorded in its file) + the solve
    assert info["start_wall_time_s"] == 2.5
    assert h["wall_time_s"] == pytest.approx(2.5 + info["solve_wall_time_s"], abs=1e-9)
    assert h["snapshot_wall_time_s"][0] > 2.5 and h["snapshot_wall_time_s"][-1] == h["wall_time_s"]
    # the flat arm records the flat start it used
    assert h["flat_info_start"] == "flat (ones)"
    assert h["flat_start_sha256"] == object_sha256(np.ones(truth.shape, np.complex64))


@needs_ptychi
def test_workflow_script_hybrid_starts_from_input_network(worker):
    from ptycho.reconstruct.io import fill_unlit, object_sha256, read_reconstruction

    s = worker["script"]["hybrid"]
    net = read_reconstruction(s["network_recon"])
    assert s["arm"] == "hybrid" and s["start_arm"] == "pinn_g2"
    assert s["start_source"] == s["network_recon"]
    assert s["start_sha256"] == object_sha256(fill_unlit(net.object, net.weight))


# ----------------------------------------------------------------------------- bad input (no pty-chi)
def _tiny_dataset(path: Path, drop: str | None = None) -> Path:
    N, n = 16, 4
    probe = np.ones((N, N), np.complex64)
    obj = np.ones((40, 40), np.complex64)
    pos = np.array([[12.0, 12.0], [12.0, 20.0], [20.0, 12.0], [20.0, 20.0]])
    meta = DatasetMeta(dose=1e3, overlap_target=0.5, overlap_measured=0.5, overlap_area=0.5,
                       probe_diameter=10.0, split="test", seed=0, config={})
    with DatasetWriter(path, n, pos, probe, obj, meta) as w:
        w.write(np.full((n, N, N), 3.0, np.float32))
    if drop:
        with h5py.File(path, "a") as f:
            del f[drop]
    return path


def _cfg(iterations=5, **kw):
    base = {"iterations": iterations, "batch_size": 4, "noise_model": "gaussian",
            "refine_probe": False}
    base.update(kw)
    return IterativeConfig(**base)


@pytest.mark.parametrize("iterations", [0, -3])
def test_iteration_budget_below_one_is_rejected(tmp_path, iterations):
    from ptycho.reconstruct.iterative import reconstruct_iterative

    path = _tiny_dataset(tmp_path / "test.h5")
    with pytest.raises(ConfigError, match="iteration budget must be an integer >= 1"):
        reconstruct_iterative(path, _cfg(iterations))


def test_bad_noise_model_and_device_are_rejected(tmp_path):
    from ptycho.reconstruct.iterative import reconstruct_iterative

    path = _tiny_dataset(tmp_path / "test.h5")
    with pytest.raises(ConfigError, match="noise_model"):
        reconstruct_iterative(path, _cfg(noise_model="laplace"))
    with pytest.raises(ConfigError, match="device"):
        reconstruct_iterative(path, _cfg(), device="tpu")


@pytest.mark.parametrize("key", ["probe", "positions"])
def test_dataset_without_probe_or_positions_names_the_file(tmp_path, key):
    from ptycho.reconstruct.iterative import reconstruct_iterative

    path = _tiny_dataset(tmp_path / f"no_{key}.h5", drop=key)
    with pytest.raises(DatasetError) as err:
        reconstruct_iterative(path, _cfg())
    assert str(path) in str(err.value) and f"/{key}" in str(err.value)


def test_snapshot_epochs_outside_budget_are_rejected(tmp_path):
    from ptycho.reconstruct.iterative import reconstruct_iterative

    path = _tiny_dataset(tmp_path / "test.h5")
    with pytest.raises(ConfigError, match=r"epoch 9 is outside 1\.\.5"):
        reconstruct_iterative(path, _cfg(5, snapshots=(1, 9)))


def _network_recon(path: Path, arm: str, shape=(40, 40), dose=1e3) -> Path:
    from ptycho.reconstruct.io import Reconstruction, write_reconstruction

    weight = np.zeros(shape, np.float32)
    weight[4:-4, 4:-4] = 1.0
    obj = np.where(weight > 0, 0.5 * np.exp(0.3j), 0).astype(np.complex64)
    write_reconstruction(path, Reconstruction(
        object=obj, weight=weight, arm=arm, gridsize=1, dose=dose, overlap_view="dense",
        n_patterns=4, wall_time_s=1.0, source="test.h5"))
    return path


def test_network_start_fills_unlit_pixels_with_ones(tmp_path):
    from ptycho.reconstruct.iterative import load_network_start

    start = load_network_start(_network_recon(tmp_path / "net.h5", "pinn_g2"), "pinn_g2")
    assert start.arm == "pinn_g2" and start.wall_time_s == 1.0
    assert np.all(start.object[:4] == 1) and np.all(start.object[:, -4:] == 1)
    assert np.allclose(start.object[4:-4, 4:-4], 0.5 * np.exp(0.3j))


@pytest.mark.parametrize("arm,expected", [("iterative", None), ("baseline", "pinn_g1")])
def test_network_start_from_wrong_arm_is_rejected(tmp_path, arm, expected):
    from ptycho.reconstruct.iterative import load_network_start

    path = _network_recon(tmp_path / "rec.h5", arm)
    with pytest.raises(DatasetError, match=str(path)):
        load_network_start(path, expected)


def test_network_start_on_another_grid_or_dose_is_rejected(tmp_path):
    from ptycho.reconstruct.iterative import load_network_start, reconstruct_iterative

    test = _tiny_dataset(tmp_path / "test.h5")
    bad_grid = load_network_start(_network_recon(tmp_path / "g.h5", "pinn_g1", shape=(48, 40)))
    with pytest.raises(DatasetError, match=r"\(48, 40\)"):
        reconstruct_iterative(test, _cfg(), start=bad_grid)
    bad_dose = load_network_start(_network_recon(tmp_path / "d.h5", "pinn_g1", dose=1e4))
    with pytest.raises(DatasetError, match="dose"):
        reconstruct_iterative(test, _cfg(), start=bad_dose)


def test_missing_dataset_file_names_the_file(tmp_path):
    from ptycho.reconstruct.iterative import reconstruct_iterative

    path = tmp_path / "absent.h5"
    with pytest.raises(DatasetError, match="absent.h5"):
        reconstruct_iterative(path, _cfg())


_STUB = r"""
import json, runpy, sys, types
a = json.loads(sys.argv[1])
smk = types.SimpleNamespace(
    input=types.SimpleNamespace(test=a["test"]), output=types.SimpleNamespace(recon=a["recon"]),
    params=types.SimpleNamespace(study=a["study"], scale="scaled", overlap="dense"),
    threads=1, log=[], rule="reconstruct_iterative")
runpy.run_path(a["script"], init_globals={"snakemake": smk}, run_name="__main__")
"""


def _run_script(test_path: Path, recon: Path, iterations: int) -> subprocess.CompletedProcess:
    raw = yaml.safe_load((ROOT / "studies" / "dose_overlap" / "study.yaml").read_text())
    raw["scales"]["scaled"]["iterative"]["iterations"] = iterations
    args = json.dumps({"test": str(test_path), "recon": str(recon), "study": raw,
                       "script": str(SCRIPT)})
    return subprocess.run([sys.executable, "-c", _STUB, args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_script_zero_iterations_exits_nonzero_without_output(tmp_path):
    test_path = _tiny_dataset(tmp_path / "test.h5")
    recon = tmp_path / "out" / "recon.h5"
    proc = _run_script(test_path, recon, 0)
    assert proc.returncode != 0
    assert "iterations" in proc.stderr
    assert not recon.exists()
    out_dir = tmp_path / "out"
    assert not out_dir.exists() or not any(out_dir.iterdir())  # no temporary file left either


def test_script_dataset_without_probe_exits_nonzero_naming_file(tmp_path):
    test_path = _tiny_dataset(tmp_path / "no_probe.h5", drop="probe")
    recon = tmp_path / "out" / "recon.h5"
    proc = _run_script(test_path, recon, 5)
    assert proc.returncode != 0
    assert str(test_path) in proc.stderr and "/probe" in proc.stderr
    assert not recon.exists()


# ----------------------------------------------------------------------------- install check
def test_ensure_ptychi_reports_install_command(monkeypatch):
    from ptycho.reconstruct import ptychi_check

    monkeypatch.setattr(ptychi_check.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PtychoError, match=r'pip install -e "\.\[iterative\]"'):
        ptychi_check.ensure_ptychi()


def test_ensure_ptychi_reports_broken_install(monkeypatch):
    from ptycho.reconstruct import ptychi_check

    monkeypatch.setattr(ptychi_check.importlib.util, "find_spec", lambda name: object())
    fake = subprocess.CompletedProcess(args=[], returncode=1, stdout="",
                                       stderr="RuntimeError: operator torchvision::nms does not exist")
    monkeypatch.setattr(ptychi_check.subprocess, "run", lambda *a, **k: fake)
    with pytest.raises(PtychoError, match="torchvision::nms.*pip install"):
        ptychi_check.ensure_ptychi()


@needs_ptychi
def test_ensure_ptychi_passes_when_installed(worker):
    # run by the worker beside its other cases; ensure_ptychi imports pty-chi in a subprocess
    assert worker["ensure_ptychi"] == "ok"
