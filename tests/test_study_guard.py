"""Two study files cannot write into one results directory: the guard (ptycho.study_guard) and the
workflow refusing a copied study of the same name before any job, writing nothing."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from test_workflow import TINY, make_workdir, snakemake

from ptycho.errors import ConfigError
from ptycho.study_guard import check_results_owner, record_results_owner


def _study(path: Path, name: str = "x", extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"study: {name}\n{extra}")
    return path


def test_guard_records_the_file_and_refuses_another_of_the_same_name(tmp_path):
    a = _study(tmp_path / "studies" / "a" / "study.yaml")
    b = tmp_path / "studies" / "b" / "study.yaml"
    b.parent.mkdir(parents=True)
    shutil.copy(a, b)
    results = tmp_path / "results" / "x"
    record = check_results_owner(results, "x", "studies/a/study.yaml", workdir=tmp_path)
    assert record["study_file"] == "studies/a/study.yaml"
    assert record["study_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert not results.exists()  # checking writes nothing
    record_results_owner(results, record)
    # the same file, however it is named: nothing to update
    assert check_results_owner(results, "x", str(a), workdir=tmp_path) is None
    assert check_results_owner(results, "x", "studies/b/../a/study.yaml", workdir=tmp_path) is None
    # a copy with the same study name: refused in one line naming both files
    with pytest.raises(ConfigError) as exc:
        check_results_owner(results, "x", "studies/b/study.yaml", workdir=tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "studies/a/study.yaml" in msg and "studies/b/study.yaml" in msg
    assert "identical copy" in msg and "'study:'" in msg
    # editing the recorded file stays allowed; the new hash is to be recorded
    _study(a, extra="# edited\n")
    new = check_results_owner(results, "x", "studies/a/study.yaml", workdir=tmp_path)
    assert new["study_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    # another study name in the directory: refused
    with pytest.raises(ConfigError, match="belongs to study 'x'"):
        check_results_owner(results, "y", "studies/a/study.yaml", workdir=tmp_path)


def test_guard_reads_a_record_without_a_hash(tmp_path):
    a = _study(tmp_path / "a.yaml")
    results = tmp_path / "results" / "x"
    results.mkdir(parents=True)
    (results / "study.json").write_text(json.dumps({"study": "x", "study_file": "a.yaml"}))
    assert check_results_owner(results, "x", str(a), workdir=tmp_path)["study_file"] == "a.yaml"
    _study(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="a.yaml"):
        check_results_owner(results, "x", "b.yaml", workdir=tmp_path)


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_copied_study_with_the_same_name_is_refused_before_any_job(tmp_path):
    """The original study's results directory, recorded by its file, is left unchanged when a
    copy that still says ``study: tiny`` is planned against it."""
    original = tmp_path / "studies" / "tiny" / "study.yaml"
    original.parent.mkdir(parents=True)
    shutil.copy(TINY, original)
    copy = tmp_path / "studies" / "mine" / "study.yaml"
    copy.parent.mkdir(parents=True)
    shutil.copy(TINY, copy)
    wd = make_workdir(tmp_path, Path("studies/mine/study.yaml"))
    results = wd / "results" / "tiny"
    record_results_owner(results, check_results_owner(results, "tiny", original))
    (results / "scaled" / "report").mkdir(parents=True)
    (results / "scaled" / "report" / "metrics.csv").write_text("arm,value\npinn_g1,0.5\n")
    before = _digest(wd / "results")
    for args in (("-n",), ("--cores", "1")):
        r = snakemake(wd, *args, "phase_g_scaled", timeout=180)
        assert r.returncode != 0
        lines = [line for line in (r.stdout + r.stderr).splitlines()
                 if "names the same study 'tiny'" in line]
        assert len(lines) == 1, r.stderr[-3000:]
        assert "studies/tiny/study.yaml" in lines[0] and "studies/mine/study.yaml" in lines[0]
        assert _digest(wd / "results") == before
    # the original study file still plans against its own results
    (wd / "config" / "config.yaml").write_text("study: studies/tiny/study.yaml\nresults: results\n")
    r = snakemake(wd, "-n", "phase_g_scaled", timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _digest(wd / "results") == before
