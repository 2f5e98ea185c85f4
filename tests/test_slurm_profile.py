"""SLURM profile: per-rule resources from measured benchmarks, one GPU per TensorFlow/torch job,
the job-status settings that cannot hang without accounting, the local report rules, the plugin
pin and the GPU mapping (partition, GRES type, CPU-only) at plan level."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import types
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from ptycho.errors import PtychoError
from ptycho.reporting.resources import measured_by_rule, planned_jobs, set_resources

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
GENERATOR = REPO / "workflow" / "slurm_resources.py"
STUDY = REPO / "studies" / "dose_overlap" / "study.yaml"
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


def _plan(tmp_path, profile_dir, *extra, target="phase_g_full"):
    """The jobs of a dry run of the study with a workflow profile (and extra arguments)."""
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True, exist_ok=True)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(
        {"study": str(STUDY), "results": "results"}))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d",
           str(wd), "-n", target, "--workflow-profile", str(profile_dir), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return [j for j in planned_jobs(r.stdout + r.stderr) if not j["rule"].startswith("phase_")]


def test_slurm_profile_plans_one_gpu_per_tensorflow_and_torch_job(tmp_path):
    """What CI runs: the SLURM profile's dry run of phase_g_full; the profile's requests apply."""
    jobs = _plan(tmp_path, PROFILE.parent)
    profile = yaml.safe_load(PROFILE.read_text())
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
        # a rule not in the generated block (not measured yet) keeps its own or the defaults
        want = requests.get(rule)
        if want is None:
            assert rule not in GPU_RULES, rule
            continue
        assert int(res["mem_mb"]) == _evaluate(want["mem_mb"], "full"), rule
        assert int(res["runtime"]) == _evaluate(want["runtime"], "full"), rule
    assert set(GPU_RULES) <= seen


def _gres(resources: dict) -> str:
    """The GPU part of the plugin's sbatch call for a job with these resources."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Res(dict):
        __getattr__ = dict.__getitem__

    # the dry run prints values; Snakemake hands the plugin integers where they are numbers
    res = Res({k: int(v) if str(v).isdigit() else v for k, v in resources.items()})
    return set_gres_string(types.SimpleNamespace(resources=res))


def test_job_status_settings_are_the_plugins_and_see_every_job_end():
    """squeue (no accounting needed), polling and retries: real plugin settings, and squeue is
    kept by the plugin at SLURM's default MinJobAge (300 s)."""
    from dataclasses import fields

    from snakemake_executor_plugin_slurm import ExecutorSettings

    profile = yaml.safe_load(PROFILE.read_text())
    names = {f.name for f in fields(ExecutorSettings)}
    plugin = {k[len("slurm-"):].replace("-", "_"): v for k, v in profile.items()
              if k.startswith("slurm-")}
    assert set(plugin) <= names, set(plugin) - names
    ExecutorSettings(**plugin)  # the plugin's own validation accepts the values
    assert plugin["status_command"] == "squeue"
    init = plugin["init_seconds_before_status_checks"]
    # the plugin switches to sacct where MinJobAge < 3 x init; the longest pause between checks
    # (180 s) stays below the default MinJobAge, so squeue still lists a job that just ended
    assert 3 * init <= 300 and profile["seconds-between-status-checks"] <= init
    # failed queries are retried for at least a minute before the plugin gives up on its jobs
    assert plugin["status_attempts"] / profile["max-status-checks-per-second"] >= 60
    assert profile["retries"] == 2 and profile["rerun-incomplete"] is True


def test_plugin_pin_is_the_tested_release_line():
    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in deps if d.startswith("snakemake-executor-plugin-slurm")]
    assert metadata.version("snakemake-executor-plugin-slurm") in pin.specifier
    for untested in ("1.9.2", "2.0.3", "2.7.1", "3.0.0"):
        assert untested not in pin.specifier, untested
    assert "2.8.1" in pin.specifier


def test_report_rules_run_locally_and_the_heavy_rules_on_the_cluster():
    snakefile = (REPO / "workflow" / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:    \w+,?\n)+)", snakefile, re.M)
    assert block, "no localrules declaration in workflow/Snakefile"
    local = set(re.findall(r"\w+", block.group(1)))
    assert local == {"build_metrics_table", "build_ssim_grid", "plot_quality_time",
                     "plot_comparison", "fit_dose_resolution", "build_summary", "assert_verified"}
    defined = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        defined |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.M))
    assert local <= defined
    assert not local & (set(GPU_RULES) | {"simulate_dataset", "evaluate_arm", "verify_study"})


def _mapped_profile(tmp_path, *options):
    """A copy of the shipped profile with its GPU mapping rewritten by the generator."""
    d = tmp_path / "profile"
    d.mkdir()
    shutil.copy(PROFILE, d / "config.yaml")
    r = subprocess.run([sys.executable, str(GENERATOR), "--profile", str(d / "config.yaml"),
                        *options, "--write"], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_gpu_rules_map_to_a_named_partition_and_gres_type(tmp_path):
    shipped = {(j["rule"], tuple(sorted(j["wildcards"].items()))): j["resources"]
               for j in _plan(tmp_path / "a", PROFILE.parent)}
    assert _gres(next(r for (rule, _), r in shipped.items() if rule == "train_pinn")) \
        == " --gpus=1"
    jobs = _plan(tmp_path / "b", _mapped_profile(tmp_path, "--gpu-partition", "a100",
                                                 "--gpu-model", "a100"))
    assert {j["rule"] for j in jobs} >= set(GPU_RULES)
    for job in jobs:
        res = job["resources"]
        before = shipped[(job["rule"], tuple(sorted(job["wildcards"].items())))]
        assert (res["mem_mb"], res["runtime"]) == (before["mem_mb"], before["runtime"])
        if job["rule"] in GPU_RULES:
            assert (res["slurm_partition"], res["gpu"], res["gpu_model"]) == ("a100", "1", "a100")
            assert _gres(res) == " --gpus=a100:1"
        else:
            assert res["slurm_partition"] == "cpu" and _gres(res) == ""


def test_gpu_rules_on_cpu_nodes(tmp_path):
    jobs = _plan(tmp_path, _mapped_profile(tmp_path, "--no-gpu"))
    assert {j["rule"] for j in jobs} >= set(GPU_RULES)
    for job in jobs:
        res = job["resources"]
        assert res["slurm_partition"] == "cpu" and int(res.get("gpu", 0)) == 0, job
        assert _gres(res) == ""
    pinn = next(j["resources"] for j in jobs if j["rule"] == "train_pinn")
    assert int(pinn["mem_mb"]) == 24000 and int(pinn["runtime"]) == 780


def test_set_resources_on_the_command_line_replaces_the_whole_profile_block(tmp_path):
    """Why the docs map GPUs with the generator: a partial --set-resources drops the profile's
    other requests, so the other GPU rules keep gpu=1 on the default CPU partition (sbatch:
    'Invalid generic resource (gres) specification' where that partition has no GPUs)."""
    jobs = _plan(tmp_path, PROFILE.parent, "--set-resources", "train_pinn:gpu=0",
                 "train_pinn:slurm_partition=cpu")
    baseline = next(j["resources"] for j in jobs if j["rule"] == "train_baseline")
    assert (baseline["gpu"], baseline["slurm_partition"]) == ("1", "cpu")
    assert _gres(baseline) == " --gpus=1"
    verify = next(j["resources"] for j in jobs if j["rule"] == "assert_verified")
    assert int(verify["mem_mb"]) == 4000  # default-resources, not the profile's 1000
