"""Provenance of a study run: resolved config, software versions, platform, git commit, seeds and
the per-job wall time and peak memory that Snakemake's ``benchmark:`` files recorded.

Package versions come from ``importlib.metadata``; no framework is imported.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

from ptycho.config import StudyConfig
from ptycho.errors import PtychoError

PACKAGES = ("ptycho-dose", "numpy", "scipy", "h5py", "scikit-image", "matplotlib", "pyyaml",
            "jsonschema", "tensorflow", "keras", "torch", "torchvision", "ptychi", "snakemake")
BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                     "mean_load", "cpu_time")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, or None when it is not installed."""
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def _git(args, cwd) -> str | None:
    try:
        r = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True,
                           text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def git_state(repo_dir=None) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding ``repo_dir``
    (default: the checkout the ``ptycho`` package was imported from). Read-only git calls."""
    if repo_dir is None:
        repo_dir = Path(__file__).resolve().parents[2]
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        return {"commit": None, "dirty": None, "repo": str(repo_dir)}
    top = _git(["rev-parse", "--show-toplevel"], repo_dir)
    head = _git(["rev-parse", "HEAD"], repo_dir)
    if top is None or head is None:
        return {"commit": None, "dirty": None, "repo": str(repo_dir)}
    status = _git(["status", "--porcelain"], repo_dir)
    return {"commit": head.strip(), "dirty": None if status is None else bool(status.strip()),
            "repo": top.strip()}


def _num(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def parse_benchmark(path) -> dict:
    """One Snakemake benchmark TSV: wall time (s), peak RSS (MB), CPU time (s), mean load; the
    last row when a benchmark was repeated (the number of rows is recorded)."""
    path = Path(path)
    if not path.is_file():
        raise PtychoError(f"{path}: benchmark file not found")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise PtychoError(f"{path}: benchmark file has no data row")
    header = lines[0].split("\t")
    if "s" not in header or "max_rss" not in header:
        raise PtychoError(f"{path}: not a Snakemake benchmark (header {header})")
    rows = [dict(zip(header, ln.split("\t"))) for ln in lines[1:]]
    last = rows[-1]
    return {
        "wall_time_s": _num(last.get("s")),
        "max_rss_mb": _num(last.get("max_rss")),
        "cpu_time_s": _num(last.get("cpu_time")),
        "mean_load": _num(last.get("mean_load")),
        "repeats": len(rows),
    }


def _bench_key(path: Path, results_root: Path) -> str:
    for base in (results_root / "benchmarks", results_root):
        try:
            return path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def build_provenance(study_dict: dict, scale: str, results_root, benchmark_paths,
                     repo_dir=None) -> dict:
    """Provenance record of one study at one scale (JSON-able)."""
    results_root = Path(results_root)
    try:
        study = StudyConfig.from_dict(study_dict)
        resolved = study.to_dict()
        config_error = None
    except PtychoError as exc:  # still record what was run
        resolved, config_error = dict(study_dict), str(exc)
    jobs = {}
    for p in benchmark_paths or ():
        p = Path(p)
        key = _bench_key(p, results_root)
        try:
            jobs[key] = parse_benchmark(p)
        except PtychoError as exc:
            jobs[key] = {"error": str(exc)}
    by_rule: dict[str, dict] = {}
    for key, j in jobs.items():
        rule = key.split("/", 1)[0]
        r = by_rule.setdefault(rule, {"jobs": 0, "wall_time_s": 0.0, "cpu_time_s": 0.0,
                                      "peak_rss_mb": None})
        r["jobs"] += 1
        r["wall_time_s"] += j.get("wall_time_s") or 0.0
        r["cpu_time_s"] += j.get("cpu_time_s") or 0.0
        if j.get("max_rss_mb") is not None:
            r["peak_rss_mb"] = max(r["peak_rss_mb"] or 0.0, j["max_rss_mb"])
    rss = [j["max_rss_mb"] for j in jobs.values() if j.get("max_rss_mb") is not None]
    totals = {
        "jobs": len(jobs),
        "wall_time_s": sum(j.get("wall_time_s") or 0.0 for j in jobs.values()),
        "cpu_time_s": sum(j.get("cpu_time_s") or 0.0 for j in jobs.values()),
        "peak_rss_mb": max(rss) if rss else None,
        "by_rule": dict(sorted(by_rule.items())),
        "note": "wall_time_s sums the jobs' own wall times (jobs may have run in parallel)",
    }
    out = {
        "study": resolved.get("study", study_dict.get("study")),
        "scale": scale,
        "results_root": str(results_root),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": resolved,
        "config_error": config_error,
        "seeds": resolved.get("seeds"),
        "packages": package_versions(),
        "python": {"version": platform.python_version(), "implementation":
                   platform.python_implementation(), "executable": sys.executable},
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "platform": platform.platform(),
                     "cpu_count": os.cpu_count()},
        "git": git_state(repo_dir),
        "jobs": dict(sorted(jobs.items())),
        "totals": totals,
    }
    probes = refined_probes(results_root)
    if probes:  # data/probe_source train_refined: the probe every arm of a cell was told
        out["refined_probes"] = probes
    return out


def refined_probes(results_root) -> dict:
    """{cell: hashes and record} of every refined-probe file under ``data/<cell>/probe/`` (none
    unless the study refines its probe on the train splits)."""
    from ptycho.data.probe_file import read_probe_file

    out = {}
    for p in sorted(Path(results_root).glob("data/*/probe/refined_probe.h5")):
        cell = p.parent.parent.name
        try:
            rp = read_probe_file(p)
        except PtychoError as exc:
            out[cell] = {"file": p.relative_to(results_root).as_posix(), "error": str(exc)}
            continue
        out[cell] = {"file": p.relative_to(results_root).as_posix(), "probe_sha256": rp.sha256,
                     "given_probe_sha256": rp.given_sha256, "train_file": rp.train_file,
                     "train_sha256": rp.train_sha256, "settings": rp.settings,
                     **{k: rp.info[k] for k in ("probe_change", "given_probe_error",
                                                "refined_probe_error") if k in rp.info}}
    return out


__all__ = ["build_provenance", "git_state", "package_versions", "parse_benchmark",
           "refined_probes"]
