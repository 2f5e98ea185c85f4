"""The tiny end-to-end Snakemake run and the workflow's input validation."""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY = REPO / "tests" / "data" / "tiny_study.yaml"


def snakemake(workdir: Path, *args: str, timeout: int = 600,
              env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def make_workdir(tmp: Path, study: dict | Path) -> Path:
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    if isinstance(study, dict):
        path = tmp / "study.yaml"
        path.write_text(yaml.safe_dump(study))
    else:
        path = study
    (tmp / "config" / "config.yaml").write_text(
        yaml.safe_dump({"study": str(path), "results": "results"}))
    return tmp


# ``tiny_run`` (the tiny end-to-end study, run once per test session) is in conftest.py.


@pytest.mark.slow
def test_tiny_study_end_to_end(tiny_run):
    root = tiny_run
    report = json.loads((root / "report" / "verification_report.json").read_text())
    assert report["passed"] is True, [c for c in report["checks"] if not c["passed"]]
    names = {c["name"] for c in report["checks"]}
    assert {"grid_complete", "files_exist_nonempty", "split_invariant", "loss_fell",
            "inventory_matches_disk", "metrics_finite_and_in_range", "replicates_complete",
            "intervals_valid"} <= names
    with open(root / "report" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    cells = {(r["dose"], r["overlap"]) for r in rows}
    arms = {r["arm"] for r in rows}
    assert len(cells) == 2 and arms == {"pinn_g1", "pinn_g2", "baseline", "iterative", "hybrid"}
    for arm in arms:
        for cell in cells:
            sub = [r for r in rows if r["arm"] == arm and (r["dose"], r["overlap"]) == cell]
            ssim = {r["quantity"]: float(r["value"]) for r in sub if r["metric"] == "ssim"}
            assert set(ssim) == {"amplitude", "phase"} and all(-1 <= v <= 1 for v in ssim.values())
            for r in sub:  # one replicate: every SSIM has its bootstrap interval and a fluence
                if r["metric"] == "ssim":
                    assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
                assert r["replicate"] == "0" and float(r["fluence"]) > 0
    assert (root / "report" / "verified.ok").exists()
    for fig in ("ssim_grid", "ms_ssim_grid", "delta_grid", "metric_vs_dose", "frc", "losses",
                "quality_time", "fluence", "dose_resolution"):
        assert (root / "report" / "figures" / f"{fig}.png").stat().st_size > 10_000
    passed = {c["name"] for c in report["checks"] if c["passed"]}
    assert {"hybrid_network_start", "snapshots_scored", "iterative_flat_start"} <= passed
    summary = (root / "report" / "summary.md").read_text()
    for section in ("## Paired differences between arms", "## Fluence", "## Dose-resolution law"):
        assert section in summary
    with open(root / "report" / "dose_resolution.csv") as fh:
        fits = list(csv.DictReader(fh))
    assert len(fits) == 5 * 2  # arms x components, one overlap view


@pytest.mark.slow
def test_tiny_study_quality_time(tiny_run):
    root = tiny_run
    for arm in ("iterative", "hybrid"):
        m = json.loads((root / "eval" / arm / "1e5_dense_r0" / "metrics.json").read_text())
        assert [s["epoch"] for s in m["snapshots"]] == [1, 5, 10, 20]
        assert m["snapshots"][-1]["metrics"] == m["metrics"]
    hyb = json.loads((root / "eval" / "hybrid" / "1e5_dense_r0" / "metrics.json").read_text())
    net = json.loads((root / "eval" / "pinn_g2" / "1e5_dense_r0" / "metrics.json").read_text())
    info = hyb["recon_info"]
    assert info["start_arm"] == "pinn_g2"  # the default rule: the study has gridsize 2
    start = Path(info["start_source"])  # relative to the run's working directory
    start = start if start.is_absolute() else root.parents[2] / start
    assert start.resolve() == (root / "recon/pinn_g2/1e5_dense_r0.h5").resolve()
    assert hyb["recon_wall_time_s"] > net["recon_wall_time_s"] == info["start_wall_time_s"]
    rows = list(csv.DictReader((root / "report" / "quality_time.csv").open()))
    # 2 cells x 2 quantities x (3 networks + hybrid)
    assert len(rows) == 16 and {r["arm"] for r in rows} == {"pinn_g1", "pinn_g2", "baseline",
                                                            "hybrid"}
    for r in rows:
        assert r["iterative_reached"] in ("true", "false")
        assert (r["iterative_time_s"] == "") == (r["iterative_reached"] == "false")
    summary = (root / "report" / "summary.md").read_text()
    assert "## Quality against time: matched quality" in summary
    assert "## Quality against time: iterations a network start saves" in summary


@pytest.mark.slow
def test_job_logs_name_arm_cell_replicate_and_progress(tiny_run):
    """Every training and solver line says whose it is (arm, cell, replicate), how far it is (k/K)
    and how long the rest takes; Snakemake prints no "Shell command: None" for script rules."""
    logs = tiny_run / "logs"
    for rule, arm in (("train_pinn", "pinn_g1"), ("train_pinn", "pinn_g2"),
                      ("train_baseline", "baseline")):
        for cell in ("1e3_dense_r0", "1e5_dense_r0"):
            text = (logs / rule / arm / f"{cell}.log").read_text()
            epochs = re.findall(rf"{arm} {cell} epoch (\d+)/3: loss \S+ val_loss \S+ lr \S+ "
                                r"\(\d+\.\d s, (?:ETA at most [\w ]+|done)\)", text)
            assert epochs and epochs == [str(k) for k in range(1, len(epochs) + 1)], text
    for arm in ("iterative", "hybrid"):
        text = (logs / "reconstruct" / arm / "1e5_dense_r0.log").read_text()
        steps = re.findall(rf"{arm} 1e5_dense_r0 LSQML epoch (\d+)/20: cost \S+ "
                           r"\(\d+\.\d s, (?:ETA [\w ]+|done)\)", text)
        assert steps[0] == "1" and steps[-1] == "20" and len(steps) >= 10, text
    runs = list((tiny_run.parents[2] / ".snakemake" / "log").glob("*.snakemake.log"))
    assert runs and not any("Shell command: None" in p.read_text() for p in runs)


@pytest.mark.slow
def test_inventory_hashes_match(tiny_run):
    root = tiny_run
    lines = [l for l in (root / "report" / "artifact_inventory.txt").read_text().splitlines()
             if l and not l.startswith("#")]
    assert len(lines) > 50
    for line in lines:
        rel, size, sha = line.split("\t")
        data = (root / rel).read_bytes()
        assert len(data) == int(size) and hashlib.sha256(data).hexdigest() == sha, rel


@pytest.mark.slow
def test_deleting_an_artifact_fails_verification(tiny_run, tmp_path):
    from ptycho.reporting.verify import assert_verified

    copy = tmp_path / "tiny" / "scaled"
    shutil.copytree(tiny_run, copy)
    victim = copy / "eval" / "baseline" / "1e5_dense_r0" / "metrics.json"
    victim.unlink()
    wd = tiny_run.parents[2]
    # re-run only the verification on the copy (what the verify_study rule would see)
    from ptycho.reporting import verify as V

    report = _reverify(V, copy, wd)
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["passed"]}
    assert "files_exist_nonempty" in failed
    assert "1e5_dense_r0/metrics.json" in failed["files_exist_nonempty"]
    assert "1e5_dense_r0 (no metrics for baseline)" in failed["replicates_complete"]
    assert "inventory_matches_disk" in failed
    out = tmp_path / "report.json"
    out.write_text(json.dumps(report))
    with pytest.raises(Exception, match="files_exist_nonempty"):
        assert_verified(out)


def _reverify(V, root: Path, wd: Path) -> dict:
    from ptycho.config import load_schema, validate_with_defaults

    study = validate_with_defaults(yaml.safe_load(TINY.read_text()), load_schema("study"), "tiny")
    inv = root / "report" / "artifact_inventory.txt"
    expected = [p for p in _inventory_paths(inv, root)] + [root / "eval/baseline/1e5_dense_r0/metrics.json"]
    cells = ["1e3_dense_r0", "1e5_dense_r0"]
    arms = ["pinn_g1", "pinn_g2", "baseline", "iterative", "hybrid"]
    return V.verify_study(
        study, "scaled", str(root),
        expected_files=[str(p) for p in expected],
        dataset_pairs=[(str(root / f"data/{c}/train.h5"), str(root / f"data/{c}/test.h5")) for c in cells],
        histories=[str(root / f"models/{a}/{c}/history.csv") for a in arms[:3] for c in cells],
        metrics_csv=str(root / "report/metrics.csv"),
        metric_paths=[str(root / f"eval/{a}/{c}/metrics.json") for a in arms for c in cells],
        inventory_path=str(inv),
    )


def _inventory_paths(inv: Path, root: Path):
    for line in inv.read_text().splitlines():
        if line and not line.startswith("#"):
            yield root / line.split("\t")[0]


@pytest.mark.slow
def test_killed_jobs_rerun_to_the_same_results_and_leave_nothing(tiny_run, tmp_path):
    """Results deleted after a verified run are rebuilt by rerunning the target; jobs killed with
    SIGKILL mid-write leave temporaries that the next run removes; the rerun gives the same
    metrics.csv, and the re-verified inventory lists only real artifacts."""
    from ptycho.data.io import is_partial
    from ptycho.reporting.inventory import check_inventory, read_inventory

    wd = tmp_path / "wd"
    shutil.copytree(tiny_run.parents[2], wd, symlinks=True)
    root = wd / "results" / "tiny" / "scaled"
    tmpdir = wd / "tmp"
    tmpdir.mkdir()
    original_csv = (root / "report" / "metrics.csv").read_bytes()
    (root / "recon" / "pinn_g1" / "1e5_dense_r0.h5").unlink()  # reruns pinn_g1's job
    (root / "eval" / "baseline" / "1e5_dense_r0" / "metrics.json").unlink()
    args = ("--cores", "2", "phase_g_scaled", "--default-resources", f"tmpdir='{tmpdir}'")
    faults = dict(os.environ, PTYCHO_TEST_KILL="stitch,eval/baseline/1e5_dense_r0/aligned.h5",
                  PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "faults"), str(REPO)]))
    r = snakemake(wd, *args, "--keep-going", env=faults, timeout=1800)
    assert r.returncode != 0
    # both jobs died mid-write: a hidden temporary beside the result, a patch store in tmpdir
    left = [p for p in (root / "eval" / "baseline" / "1e5_dense_r0").iterdir() if is_partial(p.name)]
    assert len(left) == 1 and left[0].name.startswith(".aligned.h5.partial-"), r.stderr[-3000:]
    assert len(list(tmpdir.glob("ptycho-stitch-*"))) == 1, r.stderr[-3000:]

    r = snakemake(wd, *args, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (root / "report" / "metrics.csv").read_bytes() == original_csv
    hidden = [p for p in root.rglob(".*")] + [p for p in tmpdir.rglob(".*")]
    assert hidden == [] and list(tmpdir.glob("ptycho-stitch-*")) == []
    report = json.loads((root / "report" / "verification_report.json").read_text())
    assert report["passed"], report["failed"]
    assert check_inventory(root / "report" / "artifact_inventory.txt", root) == []
    listed = [rel for rel, _, _ in read_inventory(root / "report" / "artifact_inventory.txt")]
    assert "eval/baseline/1e5_dense_r0/metrics.json" in listed
    assert not any(Path(rel).name.startswith(".") for rel in listed)


# ------------------------------------------- Python API, exports and studies on external data
README = REPO / "README.md"
EXTERNAL_CELL = "1e5_dense_r0"


def _readme_api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


def _same_metrics(got: dict, want: dict, rel: float = 1e-6) -> None:
    for q, values in want["metrics"].items():
        for name, v in values.items():
            assert got["metrics"][q][name] == pytest.approx(v, rel=rel, abs=1e-9), (q, name)


@pytest.mark.slow
def test_readme_api_example_runs_and_matches_the_workflow(tiny_run, tmp_path):
    """The README's example, run as written, gives the workflow's metrics for the same cell and
    writes only into a temporary directory."""
    (tmp_path / "tests" / "data").mkdir(parents=True)
    shutil.copy(TINY, tmp_path / "tests" / "data" / "tiny_study.yaml")
    tmp = tmp_path / "tmp"  # the example writes into a new temporary directory
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-c", _readme_api_example()], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, check=False,
                       env=dict(os.environ, TMPDIR=str(tmp)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tests", "tmp"]  # nothing beside it
    (out,) = tmp.glob("ptycho-demo-*")
    amp, phase = (float(v) for v in r.stdout.split()[-2:])
    wf = json.loads((tiny_run / "eval" / "pinn_g1" / EXTERNAL_CELL / "metrics.json").read_text())
    assert amp == pytest.approx(wf["metrics"]["amplitude"]["ssim"], rel=1e-6)
    assert phase == pytest.approx(wf["metrics"]["phase"]["ssim"], rel=1e-6)
    api = json.loads((out / "eval" / "pinn_g1" / "metrics.json").read_text())
    _same_metrics(api, wf)


def _external_study(data_dir: Path, ground_truth: bool) -> dict:
    d = yaml.safe_load(TINY.read_text())
    files = {s: {"format": "npz", "path": str(data_dir / f"{s}.npz")} for s in ("train", "test")}
    d.update(study="tinyext" if ground_truth else "tinyext_nogt", arms=["pinn", "iterative"],
             gridsizes=[1], doses=[100000], overlaps={"dense": 0.7},
             data={"source": "external", "ground_truth": ground_truth,
                   "cells": [{"dose": 100000, "overlap": "dense", **files}]})
    return d


@pytest.fixture(scope="module")
def exported_cell(tiny_run):
    """The tiny study's 1e5 dense splits exported as PtychoPINN NPZ by the export rule."""
    out = [f"results/tiny/scaled/export/{EXTERNAL_CELL}/data/{s}.npz" for s in ("train", "test")]
    r = snakemake(tiny_run.parents[2], "--cores", "2", *out)
    if r.returncode != 0:
        pytest.fail(f"export failed:\n{r.stderr[-4000:]}")
    return tiny_run / "export" / EXTERNAL_CELL / "data"


@pytest.mark.slow
def test_external_study_without_ground_truth_verifies(exported_cell, tmp_path):
    wd = make_workdir(tmp_path, _external_study(exported_cell, ground_truth=False))
    r = snakemake(wd, "--cores", "2", "phase_g_scaled")
    assert r.returncode == 0, r.stderr[-6000:]
    root = wd / "results" / "tinyext_nogt" / "scaled"
    report = json.loads((root / "report" / "verification_report.json").read_text())
    assert report["passed"] is True, [c for c in report["checks"] if not c["passed"]]
    detail = {c["name"]: c["detail"] for c in report["checks"]}
    assert "without ground truth" in detail["ground_truth_metrics"]
    assert "frc17_px_halves" in detail["ground_truth_metrics"]
    with open(root / "report" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["metric"] for r in rows} == {"poisson_deviance", "frc50_px_halves", "frc17_px_halves"}
    m = {a: json.loads((root / "eval" / a / EXTERNAL_CELL / "metrics.json").read_text())
         for a in ("pinn_g1", "iterative")}
    dev = {a: v["metrics"]["data"]["poisson_deviance"] for a, v in m.items()}
    flat = m["iterative"]["reference"]["flat_object"]["data"]["poisson_deviance"]
    # pty-chi explains the data far better than a flat object; the 3-epoch PINN lies in between
    assert dev["iterative"] < 0.1 * flat and dev["iterative"] < dev["pinn_g1"] < flat
    for a in m:
        assert m[a]["ground_truth"] is False
        for q in ("amplitude", "phase"):
            assert 2.0 <= m[a]["metrics"][q]["frc17_px_halves"] <= m[a]["metrics"][q]["frc50_px_halves"]
    with h5py.File(root / "data" / EXTERNAL_CELL / "test.h5") as f:
        assert "object" not in f
    for fig in ("residual_grid", "frc_halves_grid", "ssim_grid", "frc"):
        assert (root / "report" / "figures" / f"{fig}.png").stat().st_size > 10_000
    assert "Data residual" in (root / "report" / "summary.md").read_text()


@pytest.mark.slow
def test_external_study_with_ground_truth_reproduces_the_cell(exported_cell, tiny_run, tmp_path):
    wd = make_workdir(tmp_path, _external_study(exported_cell, ground_truth=True))
    targets = [f"results/tinyext/scaled/eval/{a}/{EXTERNAL_CELL}/metrics.json"
               for a in ("pinn_g1", "iterative")]
    r = snakemake(wd, "--cores", "2", *targets)
    assert r.returncode == 0, r.stderr[-6000:]
    for a, target in zip(("pinn_g1", "iterative"), targets):
        got = json.loads((wd / target).read_text())
        want = json.loads((tiny_run / "eval" / a / EXTERNAL_CELL / "metrics.json").read_text())
        assert got["metrics"]["amplitude"]["ssim"] > -1  # scored against the imported truth
        _same_metrics(got, want)
