"""SLURM profile: per-rule resources from measured benchmarks, one GPU per TensorFlow/torch job,
the job-status settings that cannot hang without accounting, the local report rules, the plugin
pin and the GPU mapping (partition, GRES type, CPU-only) at plan level."""

from __future__ import annotations

import json
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
from ptycho.reporting.resources import (
    STUDY_PLANNED_RULES,
    measured_by_rule,
    planned_jobs,
    retry_runtime,
    set_resources,
    study_planned,
)

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
    # the same jobs under a rule whose requests the profile sets (the network rules' follow the
    # study: only their GPU and partition are written)
    it_jobs = [dict(j, rule="reconstruct_iterative") if j["rule"] == "train_pinn" else j
               for j in jobs]
    it_profile, it_sources = set_resources(it_jobs, measured_by_rule(it_jobs), 1.5, 2.0)
    it = it_profile["reconstruct_iterative"]
    # scaled: measured x margin (1234 MB x 1.5 -> 1900 MB; 250 s x 2 -> 9 min); full: planned
    assert _evaluate(it["mem_mb"], "scaled") == 1900 and _evaluate(it["mem_mb"], "full") == 24000
    # retries ask for more memory and more time
    assert _evaluate(it["mem_mb"], "scaled", attempt=2) == 3800
    assert _evaluate(it["runtime"], "scaled") == 9 and _evaluate(it["runtime"], "full") == 720
    assert _evaluate(it["runtime"], "scaled", attempt=3) == 27
    # up to 24 h, a common partition MaxTime (above it sbatch refuses or holds the job)
    assert [_evaluate(it["runtime"], "full", attempt=a) for a in (1, 2, 3)] == [720, 1440, 1440]
    assert _evaluate(it["gpu"], "full") == 1 and _evaluate(it["gpu"], "scaled") == 0
    assert _evaluate(it["slurm_partition"], "full") == "gpu"
    assert _evaluate(it["slurm_partition"], "scaled") == "cpu"
    assert it_sources["reconstruct_iterative (scaled)"]["measured"]["jobs"] == 2
    assert "planned" in it_sources["reconstruct_iterative (full)"]
    tp = profile["train_pinn"]
    assert set(tp) == {"gpu", "slurm_partition"}, tp
    assert _evaluate(tp["gpu"], "full") == 1 and _evaluate(tp["slurm_partition"], "full") == "gpu"
    assert sources["train_pinn (scaled)"]["workflow"] is True
    ev = profile["evaluate_arm"]  # floors: 1.5 x 300 MB < 1000 MB, 2 x 20 s < 5 min
    assert _evaluate(ev["mem_mb"], "scaled") == 1000 and _evaluate(ev["runtime"], "scaled") == 5
    assert "gpu" not in ev
    with pytest.raises(PtychoError, match="margins must be >= 1"):
        set_resources(jobs, measured, margin_mem=0.5)


def test_a_block_written_before_is_brought_to_the_study_planned_form():
    old = {"train_pinn": {"gpu": "(1 if wildcards.scale == 'full' else 0)", "mem_mb": "1600 * attempt",
                          "runtime": "(780 if wildcards.scale == 'full' else 5)"},
           "evaluate_arm": {"mem_mb": "1000 * attempt", "runtime": 5},
           "verify_study": {"mem_mb": "1000 * attempt", "runtime": "5 * attempt"}}
    new = study_planned(old)
    assert new["train_pinn"] == {"gpu": old["train_pinn"]["gpu"]}
    assert _evaluate(new["evaluate_arm"]["runtime"], "scaled", attempt=2) == 10
    assert new["verify_study"] == old["verify_study"]
    assert set(STUDY_PLANNED_RULES) == {"train_pinn", "train_baseline", "adapt_pinn"}
    # a longer first request is kept; retries grow to the cap only
    assert [retry_runtime(900, a) for a in (1, 2, 3)] == [900, 1440, 1440]
    assert [retry_runtime(2000, a) for a in (1, 2)] == [2000, 2000]
    assert [retry_runtime(5, a, cap=8) for a in (1, 2, 3)] == [5, 8, 8]
    assert _evaluate(study_planned({"a": {"runtime": 600}}, 1000)["a"]["runtime"], "full",
                     attempt=3) == 1000


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
        if rule in STUDY_PLANNED_RULES:  # the study's plan: one network at N = 128 on a GPU
            assert "mem_mb" not in want and "runtime" not in want, rule
            assert (int(res["mem_mb"]), int(res["runtime"])) == (
                24000, 240 if rule == "adapt_pinn" else 780), rule
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


def test_planned_network_time_follows_the_measured_cost_model():
    """ptycho.training.cost: the per-pattern costs the pattern-size benchmark measured on one
    thread (pinn_g1 2.6-2.7 ms at N = 32, 4.7-5.1 at 64, 21-24 at 128), and clear errors."""
    from ptycho.errors import ConfigError
    from ptycho.training.cost import STARTUP_S, network_job_seconds, pattern_ms

    assert (pattern_ms(16), pattern_ms(32)) == (2.7, 2.7)
    assert pattern_ms(64) == pytest.approx(5.4) and pattern_ms(128) == pytest.approx(21.6)
    # the default study's 1e5 dense cell (1,188 train / 748 test patterns, 10 epochs)
    one = network_job_seconds(32, 1, 1188, 10, 748)
    assert one == pytest.approx(STARTUP_S + 2.7e-3 * (11880 + 0.9 * 748))
    # gridsize 2 and the ensemble cost more; the adapted arm's epochs run on the test patterns
    assert network_job_seconds(32, 2, 1188, 10, 748) > one
    assert network_job_seconds(32, 1, 1188, 10, 748, 3) - STARTUP_S == pytest.approx(
        3 * (one - STARTUP_S))
    for bad, match in (({"gridsize": 3}, "gridsize must be 1 or 2"),
                       ({"n_train": -1}, "n_train must be >= 0"),
                       ({"ensemble": 0}, "ensemble must be >= 1")):
        kw = {"N": 32, "gridsize": 1, "n_train": 10, "epochs": 1, "n_test": 10, "ensemble": 1}
        kw.update(bad)
        with pytest.raises(ConfigError, match=match):
            network_job_seconds(**kw)
    with pytest.raises(ConfigError, match="N must be >= 1"):
        pattern_ms(0)


def test_scan_patterns_are_the_simulated_splits():
    from ptycho.data.preflight import prepare_study, scan_patterns

    _, study, _ = prepare_study(STUDY)
    # the default study's scaled cells: what its simulation writes (1,188 / 748 dense)
    assert scan_patterns(study, "scaled", "dense") == (1188, 748)
    assert scan_patterns(study, "scaled", "sparse") == (170, 102)


def test_the_generator_reads_a_run_made_from_the_project_directory(tmp_path):
    """``--results`` of a run made with the README's relative study path: the results' record of
    its study file resolves in the directory the generator runs from, and the written block
    leaves the network jobs' memory and runtime to the workflow."""
    from ptycho.study_guard import MARKER, study_record

    out = tmp_path / "results"
    study_dir = out / "dose_overlap"
    bench = study_dir / "scaled" / "benchmarks"
    for rule, cell, row in (("simulate_dataset", "1e5_dense_r0", "400.0\t0:06:40\t2000.0"),
                            ("train_pinn/pinn_g1", "1e5_dense_r0", "250.0\t0:04:10\t1234.0")):
        (bench / rule).mkdir(parents=True)
        (bench / rule / f"{cell}.tsv").write_text(HEADER + row + "\t0\t0\t0\t0\t0\t1\t90\n")
    (study_dir / MARKER).write_text(json.dumps(
        study_record("dose_overlap", "studies/dose_overlap/study.yaml", REPO)))
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    shutil.copy(PROFILE, profile_dir / "config.yaml")
    r = subprocess.run([sys.executable, str(GENERATOR), "--results", str(out), "--scales",
                        "scaled", "--profile", str(profile_dir / "config.yaml"), "--write"],
                       capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    block = yaml.safe_load((profile_dir / "config.yaml").read_text())["set-resources"]
    sim = block["simulate_dataset"]  # 2000 MB x 1.5; 400 s x 2 -> 14 min, times the attempt
    assert _evaluate(sim["mem_mb"], "scaled") == 3000
    assert _evaluate(sim["runtime"], "scaled", attempt=2) == 28
    # the full scale, not measured, keeps its planned requests and its GPU
    assert (_evaluate(sim["mem_mb"], "full"), _evaluate(sim["runtime"], "full")) == (4000, 30)
    it = block["reconstruct_iterative"]
    assert _evaluate(it["mem_mb"], "full") == 32000 and _evaluate(it["gpu"], "full") == 1
    assert set(block["train_pinn"]) == {"gpu", "slurm_partition"}
    assert _evaluate(block["train_pinn"]["gpu"], "full") == 1
    assert "train_pinn (scaled)" in r.stdout and "study" in r.stdout
