"""Which study file made a results directory, so that two studies cannot write into one.

A study's results live in ``<results>/<study>/``; the directory's ``study.json`` records the study
name, the study file that made it (its path, relative to the working directory when it lies
inside it, and the file's SHA-256). Before any job (a dry run included) the workflow checks it:

* another study name: refused (the directory belongs to that study);
* the same name from another study file (a copied study whose ``study:`` was not renamed):
  refused with one line naming both files, since its jobs would rerun over the other study's
  results;
* the same file, edited or not: allowed (the normal, incremental case); a real run records the new
  content hash.

The record is written when a run starts (never in a dry run), atomically, only when it is missing
or out of date.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ptycho.data.io import atomic_path
from ptycho.errors import ConfigError

MARKER = "study.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shown(path: Path, workdir: Path) -> str:
    """``path`` relative to ``workdir`` when it lies inside it (a moved project keeps its
    records), else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(workdir.resolve()))
    except ValueError:
        return str(resolved)


def study_record(study: str, study_file, workdir=None) -> dict:
    """The record of ``study_file`` (naming study ``study``) as written to ``study.json``."""
    workdir = Path.cwd() if workdir is None else Path(workdir)
    path = Path(study_file)
    path = path if path.is_absolute() else workdir / path
    return {"study": study, "study_file": _shown(path, workdir), "study_sha256": _sha256(path)}


def check_results_owner(results_dir, study: str, study_file, workdir=None) -> dict | None:
    """Check that ``results_dir`` (``<results>/<study>``) may take the results of ``study_file``.

    Returns the record to write when the run starts (None when the recorded one is current).
    Raises ConfigError, in one line, when another study or another study file made the directory.
    """
    workdir = Path.cwd() if workdir is None else Path(workdir)
    results_dir = Path(results_dir)
    marker = results_dir / MARKER
    want = study_record(study, study_file, workdir)
    if not marker.exists():
        return want
    try:
        have = json.loads(marker.read_text())
    except (OSError, ValueError):
        have = None
    if not isinstance(have, dict):
        raise ConfigError(f"{marker}: unreadable results marker; remove it or the directory")
    owner = have.get("study")
    if owner != study:
        raise ConfigError(f"{marker}: results directory belongs to study '{owner}', not '{study}' "
                          f"({study_file}); choose another 'results' root or remove it")
    recorded = have.get("study_file")
    if recorded:
        rec_path = Path(recorded)
        rec_path = rec_path if rec_path.is_absolute() else workdir / rec_path
        if rec_path.resolve() != (workdir / Path(study_file)).resolve():
            same = " (an identical copy)" if have.get("study_sha256") == want["study_sha256"] else ""
            raise ConfigError(
                f"{results_dir} holds the results of study file {recorded}; {study_file}{same} "
                f"names the same study '{study}': give it its own 'study:' name, or remove "
                f"{results_dir} to start over")
    if have.get("study_file") == want["study_file"] and \
            have.get("study_sha256") == want["study_sha256"]:
        return None
    return want


def record_results_owner(results_dir, record: dict) -> None:
    """Write ``record`` to ``results_dir/study.json`` atomically."""
    with atomic_path(Path(results_dir) / MARKER, ".json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


__all__ = ["MARKER", "check_results_owner", "record_results_owner", "study_record"]
