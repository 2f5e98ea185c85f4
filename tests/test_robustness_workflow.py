"""Model-error levels in the workflow: the plan of a study with error levels (its cells, names and
rules), the cell-name parser, the unchanged plan of a study without errors, and the robustness
report's numbers on a small synthetic metrics table. Plan-level and unit tests only (the tiny error
study end to end takes minutes)."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from test_workflow import TINY, make_workdir, snakemake

from ptycho.data.cells import cell_name, check_cell_names, parse_cell_name
from ptycho.errors import ConfigError

TINY_JOBS = 32  # the tiny study's plan (phase_g_scaled) without error levels


def _job_counts(stdout: str) -> dict[str, int]:
    block = stdout.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def _error_study() -> dict:
    study = yaml.safe_load(TINY.read_text())
    study["study"] = "tiny_errors"
    study["errors"] = {"probe": {"kind": "defocus", "levels": [0, 0.25]},
                       "positions": {"jitter_px": [0, 1]}}
    return study


def test_cell_names_round_trip():
    doses, overlaps, levels = ["1e3", "1e4", "1e5"], ["dense", "sparse"], ["probe25", "jitter0.5",
                                                                           "modes2p80"]
    assert cell_name("1e3", "dense", 0) == "1e3_dense_r0"  # the exact cell keeps its name
    assert cell_name("1e4", "dense", 2, "probe25") == "1e4_dense_probe25_r2"
    for d in doses:
        for ov in overlaps:
            for lv in [""] + levels:
                for k in (0, 11):
                    name = cell_name(d, ov, k, lv)
                    assert parse_cell_name(name, doses, overlaps, levels) == (d, ov, lv, k)
    with pytest.raises(ConfigError):
        parse_cell_name("1e4_dense_probe10_r0", doses, overlaps, levels)  # not a level
    with pytest.raises(ConfigError):
        check_cell_names(["dense", "dense_probe25"], levels)


def test_plan_has_the_error_cells(tmp_path):
    wd = make_workdir(tmp_path, _error_study())
    r = snakemake(wd, "-n", "phase_g_scaled")
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    counts = _job_counts(r.stdout)
    # 2 doses x 1 overlap x (exact, probe25, jitter1)
    assert counts["simulate_dataset"] == 6 and counts["reconstruct_iterative"] == 6
    assert counts["train_pinn"] == 12 and counts["train_baseline"] == 6
    assert counts["evaluate_arm"] == 30 and counts["plot_comparison"] == 6
    assert counts["build_robustness"] == 1 and counts["verify_study"] == 1
    data = set(re.findall(r"results/tiny_errors/scaled/data/([^/\s]+)/train\.h5", r.stdout))
    assert data == {f"{d}_dense{lv}_r0" for d in ("1e3", "1e5") for lv in ("", "_probe25",
                                                                            "_jitter1")}
    out = r.stdout
    for path in ("models/pinn_g2/1e5_dense_probe25_r0/model.keras",
                 "recon/iterative/1e3_dense_jitter1_r0.h5",
                 "recon/hybrid/1e5_dense_jitter1_r0.h5",
                 "eval/baseline/1e3_dense_probe25_r0/metrics.json",
                 "report/comparisons/1e5_dense_jitter1_r0.png",
                 "report/robustness.csv", "report/figures/robustness_probe.png",
                 "report/figures/robustness_positions.png"):
        assert f"results/tiny_errors/scaled/{path}" in out, path


def test_plan_without_errors_is_unchanged(tmp_path):
    wd = make_workdir(tmp_path, TINY)
    r = snakemake(wd, "-n", "phase_g_scaled")
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    counts = _job_counts(r.stdout)
    assert counts["total"] == TINY_JOBS
    assert "build_robustness" not in counts and "probe" not in r.stdout.split("Job stats:")[0]


def _rows():
    """Two arms, one cell (1e4 dense), two replicates, at exact / probe25 / jitter1."""
    rows = []
    vals = {  # (arm, level): (amplitude ssim r0, r1)
        ("iterative", "exact"): (0.80, 0.82), ("iterative", "probe25"): (0.70, 0.74),
        ("iterative", "jitter1"): (0.78, 0.78),
        ("pinn_g1", "exact"): (0.50, 0.50), ("pinn_g1", "probe25"): (0.40, 0.44),
        ("pinn_g1", "jitter1"): (0.50, 0.48),
    }
    kinds = {"exact": ("", 0.0), "probe25": ("probe", 0.25), "jitter1": ("positions", 1.0)}
    for (arm, level), pair in vals.items():
        for rep, v in enumerate(pair):
            for q, shift in (("amplitude", 0.0), ("phase", -0.1)):
                kind, value = kinds[level]
                rows.append({"study": "s", "scale": "scaled", "dose": 1e4, "overlap": "dense",
                             "gridsize": 1, "arm": arm, "quantity": q, "metric": "ssim",
                             "value": v + shift, "replicate": rep, "fluence": 1.0,
                             "ci_low": v + shift - 0.01, "ci_high": v + shift + 0.01,
                             "error_level": level, "error_kind": kind, "error_value": value,
                             "data_probe_error": 0.25 if kind == "probe" else 0.0,
                             "data_position_rms_px": 1.0 if kind == "positions" else 0.0,
                             "arm_probe_error": 0.05 if arm == "iterative" else math.nan,
                             "arm_position_rms_px": 0.2 if arm == "iterative" else math.nan})
    return rows


def test_robustness_losses_and_curves(tmp_path):
    from ptycho.reporting.robustness import (
        level_curves,
        level_losses,
        losses_markdown,
        plot_level_curves,
        read_losses_csv,
        write_losses_csv,
    )

    rows = _rows()
    losses = level_losses(rows)
    assert len(losses) == 2 * 2 * 2  # levels x arms x quantities
    by = {(e["error_level"], e["arm"], e["quantity"]): e for e in losses}
    e = by[("probe25", "iterative", "amplitude")]
    assert e["exact"] == pytest.approx(0.81) and e["value"] == pytest.approx(0.72)
    assert e["loss"] == pytest.approx(0.09)  # loss = exact - level, mean of paired differences
    assert e["n_replicates"] == 2 and e["method"] == "paired t over replicates"
    assert e["loss_low"] < 0.09 < e["loss_high"]
    assert by[("jitter1", "pinn_g1", "phase")]["loss"] == pytest.approx(0.01)
    assert by[("jitter1", "iterative", "amplitude")]["kind"] == "positions"
    # one replicate: the paired interval given, or none
    one = [r for r in rows if r["replicate"] == 0]
    l1 = {(x["error_level"], x["arm"], x["quantity"]): x for x in level_losses(
        one, paired={("probe25", "pinn_g1", 1e4, "dense", "amplitude", "ssim"): (0.05, 0.15)})}
    assert l1[("probe25", "pinn_g1", "amplitude")]["loss"] == pytest.approx(0.10)
    assert (l1[("probe25", "pinn_g1", "amplitude")]["loss_low"],
            l1[("probe25", "pinn_g1", "amplitude")]["loss_high"]) == (0.05, 0.15)
    assert math.isnan(l1[("probe25", "iterative", "amplitude")]["loss_low"])
    # the curves: level 0 (the exact cell) first, then the kind's levels
    curves = level_curves(rows)
    pts = curves["probe"][("iterative", 1e4, "dense", "amplitude")]
    assert [p[0] for p in pts] == ["exact", "probe25"] and [p[1] for p in pts] == [0.0, 0.25]
    assert pts[1][2] == pytest.approx(0.72)
    # the table round-trips through robustness.csv and the summary lists every loss
    path = tmp_path / "robustness.csv"
    write_losses_csv(losses, path)
    back = read_losses_csv(path)
    assert [round(b["loss"], 9) for b in back] == [round(x["loss"], 9) for x in losses]
    assert len([ln for ln in losses_markdown(back) if ln.startswith("| probe25")]) == 4
    for kind in ("probe", "positions"):
        plot_level_curves(rows, kind, tmp_path / f"{kind}.png")
        assert (tmp_path / f"{kind}.png").stat().st_size > 1000


def test_metrics_csv_error_columns(tmp_path):
    from ptycho.reporting.records import (
        CSV_COLUMNS,
        ERROR_COLUMNS,
        read_metrics_csv,
        write_metrics_csv,
    )

    rows = _rows()
    plain, with_errors = tmp_path / "plain.csv", tmp_path / "errors.csv"
    write_metrics_csv(rows, plain)
    write_metrics_csv(rows, with_errors, errors=True)
    assert plain.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert with_errors.read_text().splitlines()[0] == ",".join(CSV_COLUMNS + ERROR_COLUMNS)
    exact = read_metrics_csv(with_errors)  # the exact cells only, the plain columns
    assert len(exact) == 8 and set(exact[0]) == set(CSV_COLUMNS)
    every = read_metrics_csv(with_errors, levels=True)
    assert len(every) == len(rows)
    r = next(x for x in every if x["error_level"] == "probe25" and x["arm"] == "pinn_g1")
    assert r["error_kind"] == "probe" and r["error_value"] == 0.25
    assert r["data_probe_error"] == 0.25 and math.isnan(r["arm_probe_error"])


def test_api_simulate_cell_passes_the_error_level(tmp_path):
    from conftest import small_study_dict

    from ptycho import api
    from ptycho.config import StudyConfig
    from ptycho.data.dataset import Dataset

    study = StudyConfig.from_dict(small_study_dict(
        errors={"probe": {"kind": "defocus", "levels": [0, 0.25]}}))
    c = api.simulate_cell(study, "scaled", 1e5, "dense", tmp_path / "p", figure=False,
                          error_level="probe25")
    with Dataset(c.test) as ds:
        assert ds.errors["label"] == "probe25"
        assert ds.attrs["probe_error"] == pytest.approx(0.25, rel=1e-3)
    exact = api.simulate_cell(study, "scaled", 1e5, "dense", tmp_path / "e", figure=False)
    with Dataset(exact.test) as ds:
        assert ds.errors is None
    with pytest.raises(ConfigError, match="unknown error level"):
        api.simulate_cell(study, "scaled", 1e5, "dense", tmp_path / "x", figure=False,
                          error_level="probe10")


def test_quick_robustness_study_is_the_full_one_at_1e5():
    """The quick subset differs from the robustness study only in its name and doses."""
    from pathlib import Path

    from ptycho import api

    root = Path(__file__).resolve().parents[1] / "studies" / "robustness"
    full = yaml.safe_load((root / "study.yaml").read_text())
    quick = yaml.safe_load((root / "quick.yaml").read_text())
    assert quick.pop("doses") == [100000] and 100000 in full.pop("doses")
    assert (quick.pop("study"), full.pop("study")) == ("robustness_quick", "robustness")
    assert quick == full
    s = api.load_study(root / "quick.yaml")
    assert [lv.label for lv in s.errors.levels()] == ["probe10", "probe25", "jitter0.5", "jitter1"]
