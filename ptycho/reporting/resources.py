"""Cluster resources from a finished run's measurements: the SLURM profile's ``set-resources``.

Snakemake's dry run names every job's rule, wildcards, planned resources and benchmark file;
``planned_jobs`` reads that printout (so the mapping from benchmark files to rules is Snakemake's
own, whatever the rules' file layout). ``measured_by_rule`` collects the peak resident memory
and wall time that the ``benchmark:`` TSVs recorded, per rule and scale, and ``set_resources``
turns them into requests with a margin: memory = margin x the largest measured peak (rounded up
to 100 MB, at least ``floor_mem_mb``, times ``attempt`` so that a retry asks for more), runtime
= margin x the longest measured wall time (whole minutes, at least ``floor_runtime_min``,
times ``attempt`` up to ``RUNTIME_CAP_MIN``).
Where a rule was not measured at a scale, the rule's own planned value stays. Rules that plan
``gpu > 0`` keep that GPU request and go to the GPU partition.

The network jobs (``STUDY_PLANNED_RULES``) get only their GPU request and partition here: their
memory and runtime grow with the study's N, ensemble, epochs and scan, which a profile's
expression cannot see (Snakemake evaluates it with the job's wildcards, input, threads and
attempt only), so the workflow plans them from the study (``workflow/rules/common.smk``) and a
measurement of one study does not pin them for another.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ptycho.errors import PtychoError
from ptycho.reporting.provenance import parse_benchmark

STUDY_PLANNED_RULES = ("adapt_pinn", "train_baseline", "train_pinn")
# A retry's runtime grows with the attempt up to this many minutes (24 h, a common partition
# MaxTime): above a partition's limit sbatch refuses the job or, depending on the cluster's
# EnforcePartLimits, holds it pending. A first request above it stays as it is.
RUNTIME_CAP_MIN = 24 * 60


def retry_runtime(minutes: int, attempt: int, cap: int = RUNTIME_CAP_MIN) -> int:
    """The runtime request of an attempt: ``minutes`` x ``attempt``, at most ``cap`` (but never
    below ``minutes``)."""
    return max(int(minutes), min(int(cap), int(minutes) * int(attempt)))


def runtime_expression(minutes, cap: int = RUNTIME_CAP_MIN) -> str:
    """``retry_runtime`` as a set-resources expression of ``minutes`` (a number or an expression
    of the scale wildcard)."""
    return f"max({minutes}, min({int(cap)}, {minutes} * attempt))"
RULE = re.compile(r"^(?:local)?rule (\w+):\s*$")
FIELD = re.compile(r"^\s+(\w+): (.*)$")


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(", "):
        if "=" in item:
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def planned_jobs(dry_run: str) -> list[dict]:
    """Jobs of a ``snakemake -n`` printout: [{"rule", "benchmark" (or None), "wildcards" dict,
    "resources" dict of strings}]."""
    jobs, job = [], None
    for line in dry_run.splitlines():
        m = RULE.match(line)
        if m:
            job = {"rule": m.group(1), "benchmark": None, "wildcards": {}, "resources": {}}
            jobs.append(job)
            continue
        f = FIELD.match(line) if job is not None else None
        if f is None:
            job = None  # a job's fields are the indented lines right below its rule line
            continue
        key, value = f.groups()
        if key == "benchmark":
            job["benchmark"] = value.strip()
        elif key in ("wildcards", "resources"):
            job[key] = _pairs(value)
    return jobs


def _scale(job: dict) -> str:
    return job["wildcards"].get("scale", "any")


def measured_by_rule(jobs: list[dict], workdir=".") -> dict[tuple[str, str], dict]:
    """{(rule, scale): {"jobs", "total_s", "max_s", "max_rss_mb"}} over the jobs whose benchmark
    file exists (paths relative to ``workdir`` unless absolute)."""
    out: dict[tuple[str, str], dict] = {}
    for job in jobs:
        if not job["benchmark"]:
            continue
        path = Path(job["benchmark"])
        path = path if path.is_absolute() else Path(workdir) / path
        if not path.is_file():
            continue
        b = parse_benchmark(path)
        key = (job["rule"], _scale(job))
        m = out.setdefault(key, {"jobs": 0, "total_s": 0.0, "max_s": 0.0, "max_rss_mb": 0.0})
        m["jobs"] += 1
        m["total_s"] += b["wall_time_s"] or 0.0
        m["max_s"] = max(m["max_s"], b["wall_time_s"] or 0.0)
        m["max_rss_mb"] = max(m["max_rss_mb"], b["max_rss_mb"] or 0.0)
    return out


def _by_scale(values: dict[str, int | str]):
    """One value, or a Snakemake resource expression choosing it by the scale wildcard."""
    distinct = set(values.values())
    if len(distinct) == 1:
        return distinct.pop()
    full = values.get("full")
    other = {v for s, v in values.items() if s != "full"}
    if full is None or len(other) != 1:
        raise PtychoError(f"cannot express per-scale resources {values}")
    return f"({full!r} if wildcards.scale == 'full' else {other.pop()!r})"


def set_resources(jobs: list[dict], measured: dict[tuple[str, str], dict], margin_mem: float = 1.5,
                  margin_time: float = 2.0, floor_mem_mb: int = 1000, floor_runtime_min: int = 5,
                  gpu_partition: str = "gpu", cpu_partition: str = "cpu",
                  max_runtime_min: int = RUNTIME_CAP_MIN) -> tuple[dict, dict]:
    """(set-resources mapping for the profile, the numbers behind it per rule and scale)."""
    if margin_mem < 1 or margin_time < 1:
        raise PtychoError(f"margins must be >= 1, got memory {margin_mem}, time {margin_time}")
    planned: dict[str, dict[str, dict]] = {}
    for job in jobs:
        if job["rule"].startswith("phase_") or not job["resources"]:
            continue
        planned.setdefault(job["rule"], {}).setdefault(_scale(job), job["resources"])
    profile, sources = {}, {}
    for rule, scales in sorted(planned.items()):
        mem, runtime, gpu = {}, {}, {}
        for scale, res in scales.items():
            m = measured.get((rule, scale))
            if m:
                mem[scale] = max(floor_mem_mb, 100 * math.ceil(margin_mem * m["max_rss_mb"] / 100))
                runtime[scale] = max(floor_runtime_min, math.ceil(margin_time * m["max_s"] / 60))
                src = {"measured": m}
            else:
                mem[scale] = int(float(res.get("mem_mb", floor_mem_mb)))
                runtime[scale] = int(float(res.get("runtime", floor_runtime_min)))
                src = {"planned": {k: res[k] for k in ("mem_mb", "runtime") if k in res}}
            gpu[scale] = int(float(res.get("gpu", 0)))
            sources[f"{rule} ({scale})"] = {**src, "mem_mb": mem[scale],
                                             "runtime_min": runtime[scale], "gpu": gpu[scale]}
        entry = {"mem_mb": f"{_by_scale(mem)} * attempt",
                 "runtime": runtime_expression(_by_scale(runtime), max_runtime_min)}
        if rule in STUDY_PLANNED_RULES:
            entry = {}
            for scale in scales:
                sources[f"{rule} ({scale})"]["workflow"] = True
        if any(gpu.values()):
            entry["gpu"] = _by_scale(gpu)
            entry["slurm_partition"] = _by_scale(
                {s: gpu_partition if g else cpu_partition for s, g in gpu.items()})
        if entry:
            profile[rule] = entry
    return profile, sources


def study_planned(profile: dict, max_runtime_min: int = RUNTIME_CAP_MIN) -> dict:
    """A profile's set-resources mapping as ``set_resources`` writes it now: the network rules
    without memory and runtime (the workflow plans them from the study), every runtime growing
    with the attempt like the memory, up to ``max_runtime_min`` (a job killed at its time limit
    gets more on its retry)."""
    out = {}
    for rule, entry in profile.items():
        entry = dict(entry)
        if rule in STUDY_PLANNED_RULES:
            entry.pop("mem_mb", None)
            entry.pop("runtime", None)
        elif "runtime" in entry and "attempt" not in str(entry["runtime"]):
            entry["runtime"] = runtime_expression(entry["runtime"], max_runtime_min)
        if entry:
            out[rule] = entry
    return out


__all__ = ["RUNTIME_CAP_MIN", "STUDY_PLANNED_RULES", "measured_by_rule", "planned_jobs",
           "retry_runtime", "runtime_expression", "set_resources", "study_planned"]
