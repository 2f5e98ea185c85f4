"""The workflow's plans and input checks: bad studies, bad files and bad data stop Snakemake
before any job; the full-scale and replicate plans; the results lock; object files as inputs
(dry runs and short runs, no finished study needed -- the end-to-end run is test_workflow.py)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_reliability import BAD_INPUTS
from test_workflow import REPO, TINY, _external_study, make_workdir, snakemake


def _tiny(**over):
    d = yaml.safe_load(TINY.read_text())
    d.update(over)
    return d


@pytest.mark.parametrize(
    "over,message",
    [
        ({"arms": ["pinn", "magic"]}, "arms/1"),
        ({"doses": []}, "doses"),
        ({"dosse": [1000]}, "dosse"),
        ({"overlaps": {"dense": 1.5}}, "overlaps/dense"),
        ({"doses": [-10]}, "doses/0"),
        ({"gridsizes": [1], "hybrid": {"start_from": "pinn_g2"}},
         "'hybrid/start_from' is 'pinn_g2', which is not a network arm of this study"),
        ({"arms": ["baseline", "iterative", "hybrid"]}, "no PINN arm to default to"),
        ({"hybrid": {"start_from": "iterative"}}, "hybrid/start_from"),
    ],
)
def test_bad_study_fails_before_any_job(tmp_path, over, message):
    wd = make_workdir(tmp_path, _tiny(**over))
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=120)
    assert r.returncode != 0
    assert message in (r.stdout + r.stderr)
    assert not (wd / "results").exists()


def test_results_of_another_study_are_refused(tmp_path):
    wd = make_workdir(tmp_path, TINY)
    marker = wd / "results" / "tiny" / "study.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"study": "other_study"}))
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=120)
    assert r.returncode != 0
    assert "belongs to study 'other_study'" in (r.stdout + r.stderr)


def test_full_scale_plans_with_gpu_resources(tmp_path):
    wd = make_workdir(tmp_path, REPO / "studies" / "dose_overlap" / "study.yaml")
    r = snakemake(wd, "-n", "phase_g_full", "--cores", "16", "--resources", "gpu=1", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    # three replicates of every cell at the full scale
    for rule, count in (("simulate_dataset", 18), ("train_pinn", 36), ("adapt_pinn", 18),
                        ("train_baseline", 18), ("reconstruct_iterative", 18),
                        ("reconstruct_hybrid", 18), ("evaluate_arm", 108), ("verify_study", 1),
                        ("fit_dose_resolution", 1)):
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), rule
    assert "results/dose_overlap/full/data/1e3_dense_r2/train.h5" in out


@pytest.mark.parametrize("name", [n for n, c in BAD_INPUTS.items() if c.workflow])
def test_bad_input_stops_snakemake_before_any_job(tmp_path, name):
    """Rows of the bad-input table through Snakemake itself (not a dry run): non-zero exit before
    any job, the message on one line, and nothing written under results."""
    case = BAD_INPUTS[name]
    wd = make_workdir(tmp_path, Path(case.make(tmp_path)))
    r = snakemake(wd, "--cores", "1", "phase_g_scaled", timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert any(all(f in line for f in case.expect) for line in out.splitlines()), out[-3000:]
    assert "Finished jobid" not in out and not (wd / "results").exists()


def test_a_second_run_on_the_same_results_stops_before_any_job(tmp_path):
    from ptycho.data.io import lock_directory

    wd = make_workdir(tmp_path, TINY)
    held = lock_directory(wd / "results" / "tiny")  # what a running Snakemake holds
    try:
        r = snakemake(wd, "--cores", "1", "phase_c_scaled", timeout=180)
    finally:
        held.close()
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"in use by another run (pid {os.getpid()} on " in out
    assert "Finished jobid" not in out and not (wd / "results" / "tiny" / "scaled").exists()


def test_editing_the_object_file_resimulates(tmp_path):
    def write_object(scale: float):
        yy, xx = np.mgrid[0:64, 0:64]
        amp = 0.5 + 0.4 * scale * np.sin(xx / 5.0) * np.cos(yy / 7.0)
        np.savez(tmp_path / "object.npz", objectGuess=(amp * np.exp(0.5j * amp)).astype(np.complex64))

    write_object(1.0)
    study = yaml.safe_load(TINY.read_text())
    study.update(arms=["iterative"], doses=[1000],
                 object={"source": "file", "path": str(tmp_path / "object.npz")})
    wd = make_workdir(tmp_path, study)
    cell = wd / "results" / "tiny" / "scaled" / "data" / "1e3_dense_r0"
    cell.mkdir(parents=True)
    for name in ("train.h5", "test.h5", "summary.json", "summary.png"):  # as if simulated
        (cell / name).write_text("made after the object file")
    r = snakemake(wd, "-n", "phase_c_scaled", timeout=120)
    assert "Nothing to be done" in r.stdout + r.stderr
    write_object(0.5)  # edited in place
    r = snakemake(wd, "-n", "phase_c_scaled", timeout=120)
    out = r.stdout + r.stderr
    assert any(line.split()[:2] == ["simulate_dataset", "1"] for line in out.splitlines()), out
    assert any("reason: Updated input files" in line and line.endswith("object.npz")
               for line in out.splitlines()), out


def test_replicates_plan_one_job_per_cell_replicate(tmp_path):
    study = _tiny()
    study["scales"]["scaled"]["replicates"] = 2
    wd = make_workdir(tmp_path, study)
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    for rule, count in (("simulate_dataset", 4), ("train_pinn", 8), ("reconstruct_hybrid", 4), ("evaluate_arm", 20),
                        ("plot_comparison", 4), ("build_metrics_table", 1)):
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), rule
    for cell in ("1e3_dense_r0", "1e3_dense_r1", "1e5_dense_r1"):
        assert f"results/tiny/scaled/eval/iterative/{cell}/metrics.json" in out


def _bad_npz(path: Path, n=20, N=16, H=64, **edits) -> Path:
    rng = np.random.default_rng(0)
    y, x = rng.uniform(N, H - N, n), rng.uniform(N, H - N, n)
    arrays = {"diff3d": np.sqrt(rng.poisson(5.0, (n, N, N))).astype(np.float32), "xcoords": x,
              "ycoords": y, "xcoords_start": x, "ycoords_start": y,
              "probeGuess": np.ones((N, N), np.complex64),
              "objectGuess": np.ones((H, H), np.complex64)}
    for k, v in edits.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v(arrays[k]) if callable(v) else v
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("edits,message", [
    ({"ycoords": None}, "missing key 'ycoords'"),
    ({"diff3d": lambda a: a.astype(np.uint16)}, "'diff3d' has dtype uint16"),
    ({"xcoords": lambda a: a[:-2], "xcoords_start": lambda a: a[:-2]},
     "18 positions but 'diff3d' holds 20"),
    ({"ycoords": lambda a: a + 60.0}, "outside the object"),
])
def test_bad_external_files_stop_before_any_job(tmp_path, edits, message):
    bad = _bad_npz(tmp_path / "bad.npz", **edits)
    good = _bad_npz(tmp_path / "good.npz")
    study = _external_study(tmp_path, ground_truth=True)
    study["data"]["cells"][0]["train"]["path"] = str(good)
    study["data"]["cells"][0]["test"]["path"] = str(bad)
    wd = make_workdir(tmp_path, study)
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=120)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert message in out and "bad.npz" in out
    assert not (wd / "results").exists()
