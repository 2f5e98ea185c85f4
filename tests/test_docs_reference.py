"""The study file reference page is generated from the schemas and kept in sync."""

import subprocess
import sys

import pytest

from ptycho import docs_reference as D
from ptycho.config import StudyConfig, load_schema

from conftest import REPO, small_study_dict

PAGE = REPO / "docs" / "reference" / "study.md"


def _row(page: str, key: str) -> list[str]:
    for line in page.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [c.strip() for c in line.strip("|").split(" | ")]
    raise AssertionError(f"no row for {key}")


def test_committed_page_equals_generator_output():
    assert PAGE.read_text() == D.reference_markdown(), (
        "docs/reference/study.md is stale: run `python -m ptycho.docs_reference`")


@pytest.mark.parametrize("name", ["study", "config"])
def test_every_schema_key_has_a_description(name):
    assert D.missing_descriptions(load_schema(name)) == []


def test_missing_description_is_reported():
    schema = {"type": "object", "properties": {
        "a": {"type": "integer", "description": "documented"},
        "b": {"type": "object", "properties": {"c": {"type": "number", "default": 1.5}}}}}
    assert D.missing_descriptions(schema) == ["b", "b.c"]


def test_known_keys_with_their_defaults_and_bounds():
    page = D.reference_markdown()
    key, typ, default, allowed, _ = _row(page, "scales.<scale>.training.batch_size")
    assert (typ, default, allowed) == ("integer", "`32`", "≥ 1")
    # the default the schema fills in is the one the page states
    cfg = StudyConfig.from_dict(small_study_dict())
    assert cfg.scale("scaled").training.batch_size == 32
    # null on the page: the epochs follow N and the backbone (cnn: 20)
    key, typ, default, allowed, _ = _row(page, "scales.<scale>.training.epochs")
    assert (typ, default, allowed) == ("integer or null", "`null`", "≥ 1")
    assert cfg.scale("scaled").training.epochs == 20
    assert cfg.scale("full").training.learning_rate == 0.001
    # null on the page: the learning rate follows N and the backbone (cnn: 0.001)
    assert _row(page, "scales.<scale>.training.learning_rate")[2] == "`null`"
    # a default that differs between the scales is listed per scale
    assert _row(page, "scales.<scale>.replicates")[2] == "scaled: `1`; full: `3`"
    assert (cfg.scale("scaled").replicates, cfg.scale("full").replicates) == (1, 3)
    assert _row(page, "geometry.detector_pixel_size_m")[2] == "`7.5e-05`"
    assert _row(page, "study")[2] == "*required*"
    assert _row(page, "overlaps.<name>")[3] == "≥ 0; < 1"
    assert _row(page, "arms")[3] == ("at least 1 item; no repeats; each: one of `pinn`, `adapted`, "
                                     "`baseline`, `iterative`, `hybrid`")
    # a pattern's | is escaped so the table keeps its columns
    assert _row(page, "hybrid.start_from")[3] == r"matches `^(pinn_g[0-9]+\|adapted_g[0-9]+\|baseline)$`"
    assert _row(page, "results")[2] == "`results`"  # the run configuration's keys
    assert _row(page, "stitching.shared_error_iterations")[1:4] == ["integer or null", "`null`",
                                                                          "≥ 0; ≤ 100"]


def test_every_schema_leaf_is_on_the_page():
    page = D.reference_markdown()
    rows = D.schema_rows(load_schema("study"))
    assert len(rows) == 143
    for r in rows:
        assert f"| `{r.path}` |" in page


def test_check_mode(tmp_path):
    out = tmp_path / "study.md"
    cmd = [sys.executable, "-m", "ptycho.docs_reference", "--check", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert D.main(["--out", str(out)]) == 0
    assert out.read_text() == D.reference_markdown()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out.write_text(out.read_text().replace("`32`", "`33`", 1))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1
    assert "is stale: regenerate it with `python -m ptycho.docs_reference`" in r.stderr
