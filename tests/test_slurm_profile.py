"""SLURM profile: per-rule resources from measured benchmarks, one GPU per TensorFlow/torch job."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from ptycho.errors import PtychoError
from ptycho.reporting.resources import measured_by_rule, planned_jobs, set_resources

REPO = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
GPU_RULES = ("train_pinn", "train_baseline", "adapt_pinn", "reconstruct_iterative",
             "reconstruct_hybrid")


def _job(rule, scale, bench, resources):
    return (f"[Sun Nov 29 22:25:05 2026]\nrule {rule}:\n    input: x.h5\n    output: y.h5\n"
            f"    jobid: 1\n    benchmark: {bench}\n    reason: Forced execution\n"
            f"    wildcards: study=s, scale={scale}, dose=1e3, overlap=dense\n"
            f"    resources: tmpdir=/tmp, {resources}\nShell command: None\n\n")


def _evaluate(value, scale, attempt=1):
    """A set-resources value as Snakemake evaluates it (expressions see wildcards and attempt)."""
    if not isinstance(value, str):
        return value
    return eval(value, {"wildcards": types.SimpleNamespace(scale=scale), "attempt": attempt})


def test_measured_benchmarks_become_requests_with_the_margin(tmp_path):
    (tmp_path / "a.tsv").write_text(HEADER + "100.0\t0:01:40\t900.0\t0\t0\t0\t0\t0\t1\t90\n")
    (tmp_path / "b.tsv").write_text(HEADER + "250.0\t0:04:10\t1234.0\t0\t0\t0\t0\t0\t1\t200\n")
    (tmp_path / "c.tsv").write_text(HEADER + "20.0\t0:00:20\t300.0\t0\t0\t0\t0\t0\t1\t20\n")
    text = (_job("train_pinn", "scaled", tmp_path / "a.tsv", "gpu=0, runtime=15, mem_mb=2500")
            + _job("train_pinn", "scaled", tmp_path / "b.tsv", "gpu=0, runtime=15, mem_mb=2500")
            + _job("train_pinn", "full", tmp_path / "missing.tsv", "gpu=1, runtime=720, mem_mb=24000")
            + _job("evaluate_arm", "scaled", tmp_path / "c.tsv", "runtime=5, mem_mb=1000"))
    jobs = planned_jobs(text)
    assert [j["rule"] for j in jobs] == ["train_pinn"] * 3 + ["evaluate_arm"]
    assert jobs[2]["resources"]["gpu"] == "1" and jobs[0]["wildcards"]["scale"] == "scaled"
    measured = measured_by_rule(jobs)
    assert measured[("train_pinn", "scaled")] == {"jobs": 2, "total_s": 350.0, "max_s": 250.0,
                                                  "max_rss_mb": 1234.0}
    assert ("train_pinn", "full") not in measured  # no TSV: not measured
    profile, sources = set_resources(jobs, measured, margin_mem=1.5, margin_time=2.0)
    tp = profile["train_pinn"]
    # scaled: measured x margin (1234 MB x 1.5 -> 1900 MB; 250 s x 2 -> 9 min); full: planned
    assert _evaluate(tp["mem_mb"], "scaled") == 1900 and _evaluate(tp["mem_mb"], "full") == 24000
    assert _evaluate(tp["mem_mb"], "scaled", attempt=2) == 3800  # retries ask for more
    assert _evaluate(tp["runtime"], "scaled") == 9 and _evaluate(tp["runtime"], "full") == 720
    assert _evaluate(tp["gpu"], "full") == 1 and _evaluate(tp["gpu"], "scaled") == 0
    assert _evaluate(tp["slurm_partition"], "full") == "gpu"
    assert _evaluate(tp["slurm_partition"], "scaled") == "cpu"
    ev = profile["evaluate_arm"]  # floors: 1.5 x 300 MB < 1000 MB, 2 x 20 s < 5 min
    assert _evaluate(ev["mem_mb"], "scaled") == 1000 and ev["runtime"] == 5 and "gpu" not in ev
    assert sources["train_pinn (scaled)"]["measured"]["jobs"] == 2
    assert "planned" in sources["train_pinn (full)"]
    with pytest.raises(PtychoError, match="margins must be >= 1"):
        set_resources(jobs, measured, margin_mem=0.5)


def test_slurm_profile_plans_one_gpu_per_tensorflow_and_torch_job(tmp_path):
    """What CI runs: the SLURM profile's dry run of phase_g_full; the profile's requests apply."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(
        {"study": str(REPO / "studies" / "dose_overlap" / "study.yaml"), "results": "results"}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d",
           str(tmp_path), "-n", "--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
           "phase_g_full"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = planned_jobs(r.stdout + r.stderr)
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    requests = profile["set-resources"]
    seen = set()
    for job in jobs:
        rule, res = job["rule"], job["resources"]
        if rule.startswith("phase_"):
            continue
        seen.add(rule)
        gpu = int(res.get("gpu", 0))
        assert gpu == (1 if rule in GPU_RULES else 0), (rule, res)
        assert res["slurm_partition"] == ("gpu" if gpu else "cpu"), (rule, res)
        assert int(res["mem_mb"]) == _evaluate(requests[rule]["mem_mb"], "full"), rule
        assert int(res["runtime"]) == _evaluate(requests[rule]["runtime"], "full"), rule
    assert set(GPU_RULES) <= seen
