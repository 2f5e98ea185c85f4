"""The tiny end-to-end Snakemake run and the workflow's input validation."""

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
TINY = REPO / "tests" / "data" / "tiny_study.yaml"


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("e2e"), TINY)
    r = snakemake(wd, "--cores", "2", "phase_g_scaled")
    if r.returncode != 0:
        pytest.fail(f"snakemake failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")
    return wd / "results" / "tiny" / "scaled"


@pytest.mark.slow
def test_tiny_study_end_to_end(tiny_run):
    root = tiny_run
    report = json.loads((root / "report" / "verification_report.json").read_text())
    assert report["passed"] is True, [c for c in report["checks"] if not c["passed"]]
    names = {c["name"] for c in report["checks"]}
    assert {"grid_complete", "files_exist_nonempty", "split_invariant", "loss_fell",
            "inventory_matches_disk", "metrics_finite_and_in_range", "replicates_complete",
            "intervals_valid"} <= names
    rows = list(csv.DictReader(open(root / "report" / "metrics.csv")))
    cells = {(r["dose"], r["overlap"]) for r in rows}
    arms = {r["arm"] for r in rows}
    assert len(cells) == 2 and arms == {"pinn_g1", "pinn_g2", "baseline", "iterative"}
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
                "fluence", "dose_resolution"):
        assert (root / "report" / "figures" / f"{fig}.png").stat().st_size > 10_000
    summary = (root / "report" / "summary.md").read_text()
    for section in ("## Paired differences between arms", "## Fluence", "## Dose-resolution law"):
        assert section in summary
    with open(root / "report" / "dose_resolution.csv") as fh:
        fits = list(csv.DictReader(fh))
    assert len(fits) == 4 * 2  # arms x components, one overlap view


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
    arms = ["pinn_g1", "pinn_g2", "baseline", "iterative"]
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
    for rule, count in (("simulate_dataset", 18), ("train_pinn", 36), ("train_baseline", 18),
                        ("reconstruct_iterative", 18), ("evaluate_arm", 72), ("verify_study", 1),
                        ("fit_dose_resolution", 1)):
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), rule
    assert "results/dose_overlap/full/data/1e3_dense_r2/train.h5" in out


def test_replicates_plan_one_job_per_cell_replicate(tmp_path):
    study = _tiny()
    study["scales"]["scaled"]["replicates"] = 2
    wd = make_workdir(tmp_path, study)
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    for rule, count in (("simulate_dataset", 4), ("train_pinn", 8), ("evaluate_arm", 16),
                        ("plot_comparison", 4), ("build_metrics_table", 1)):
        assert any(line.split()[:2] == [rule, str(count)] for line in out.splitlines()), rule
    for cell in ("1e3_dense_r0", "1e3_dense_r1", "1e5_dense_r1"):
        assert f"results/tiny/scaled/eval/iterative/{cell}/metrics.json" in out
