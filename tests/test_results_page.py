"""The results page generator: its numbers are those of the run's metrics.csv, its verdict that of
the verification report, and only differences the paired intervals support are stated."""

import csv
import json
import math
import shutil
import subprocess
import sys

import pytest

from ptycho.config import dose_label
from ptycho.reporting import results_page as RP

from conftest import REPO


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def _section(page: str, dose: float, overlap: str) -> str:
    head = f"### Dose {dose_label(dose)} photons per exposure, overlap `{overlap}`"
    assert page.count(head) == 1, head
    return page.split(head, 1)[1].split("\n#", 1)[0]


def _arm_row(section: str, arm: str) -> list[str]:
    (line,) = [ln for ln in section.splitlines() if ln.startswith(f"| `{arm}` |")]
    return _cells(line)


def _copy_run(src, dst):
    """The report and the metrics.json files of a run (what the page reads), without the
    datasets, models and reconstructions."""
    shutil.copytree(src / "report", dst / "report")
    for p in (src / "eval").glob("*/*/metrics.json"):
        q = dst / p.relative_to(src)
        q.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, q)
    return dst


# ------------------------------------------------------------------------ unit (no run needed)
def _entry(a, b, diff, lo, hi):
    return {"dose": 1000.0, "overlap": "dense", "arm_a": a, "arm_b": b, "quantity": "phase",
            "metric": "ssim", "diff": diff, "low": lo, "high": hi, "method": "m"}


@pytest.mark.parametrize("entry, expected", [
    (_entry("pinn_g1", "baseline", 0.08, 0.05, 0.11), "supported"),
    (_entry("pinn_g1", "baseline", -0.08, -0.11, -0.05), "supported"),
    (_entry("pinn_g1", "baseline", 0.03, 0.01, 0.05), "spread"),
    (_entry("pinn_g2", "iterative", -0.049, -0.06, -0.03), "spread"),
    (_entry("iterative", "hybrid", 0.03, 0.01, 0.05), "spread"),  # hybrid starts from a network
    (_entry("pinn_g1", "baseline", 0.2, -0.01, 0.4), "none"),
    (_entry("pinn_g1", "baseline", 0.2, math.nan, math.nan), "none"),
])
def test_classify(entry, expected):
    assert RP.classify(entry) == expected


def test_classify_spread_is_a_parameter():
    assert RP.classify(_entry("pinn_g1", "baseline", 0.03, 0.01, 0.05), spread=0.02) == "supported"


def test_value_text_and_verdict():
    assert RP.value_text(0.41249, 0.3981, 0.42551) == "0.412 [0.398, 0.426]"
    assert RP.value_text(0.5, math.nan, math.nan) == "0.500"
    checks = [{"name": "a", "passed": True, "detail": ""}, {"name": "b", "passed": True}]
    assert RP.verdict_line({"passed": True, "checks": checks}) == (
        "**Verification: passed** (2 of 2 checks passed).")
    checks[1]["passed"] = False
    assert RP.verdict_line({"passed": False, "checks": checks}) == (
        "**Verification: FAILED** (1 of 2 checks failed: `b`).")
    assert RP.verdict_line({"passed": True, "checks": []}).startswith("**Verification: FAILED**")


# ------------------------------------------------------------------------ the tiny study
@pytest.mark.slow
def test_page_numbers_equal_metrics_csv(tiny_run, tmp_path):
    out = RP.write_results_page(tiny_run, tmp_path / "docs" / "results.md")
    page = out.read_text()
    with open(tiny_run / "report" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] == "ssim"]
    assert len(rows) == 2 * 5 * 2  # cells x arms x (amplitude, phase), one replicate
    for r in rows:
        want = (f"{float(r['value']):.3f} [{float(r['ci_low']):.3f}, "
                f"{float(r['ci_high']):.3f}]")
        row = _arm_row(_section(page, float(r["dose"]), r["overlap"]), r["arm"])
        assert row[1 if r["quantity"] == "amplitude" else 2] == want, (r, row)
    # every cell's flat-object floor, from its metrics.json
    for d in (1000.0, 100000.0):
        m = json.loads((tiny_run / "eval" / "pinn_g1" / f"{dose_label(d)}_dense_r0"
                        / "metrics.json").read_text())
        floor = m["reference"]["flat_object"]
        row = _cells([ln for ln in _section(page, d, "dense").splitlines()
                      if ln.startswith("| *flat object* |")][0])
        assert row[1:3] == [f"{floor['amplitude']['ssim']:.3f}", f"{floor['phase']['ssim']:.3f}"]
    # machine and versions from provenance.json
    prov = json.loads((tiny_run / "report" / "provenance.json").read_text())
    assert f"| numpy | {prov['packages']['numpy']} |" in page
    assert f"| Python | {prov['python']['version']} |" in page
    # the figures are small here: copied next to the page and embedded
    for fig in ("ssim_grid", "delta_grid", "quality_time"):
        assert f"](results/figures/{fig}.png)" in page
        assert (tmp_path / "docs" / "results" / "figures" / f"{fig}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_page_states_only_supported_differences(tiny_run, tmp_path):
    from ptycho.reporting.records import load_records, read_metrics_csv
    from ptycho.reporting.uncertainty import collect_paired_differences

    page = RP.write_results_page(tiny_run, tmp_path / "results.md", figures="link").read_text()
    rows = read_metrics_csv(tiny_run / "report" / "metrics.csv")
    paired = [e for e in collect_paired_differences(load_records(RP.metric_paths(tiny_run, rows)))
              if e["metric"] == "ssim"]
    assert len(paired) == 2 * 10 * 2  # cells x arm pairs x components
    stats = page.split("## What the statistics support", 1)[1].split("\n## ", 1)[0]
    table = [_cells(ln) for ln in stats.splitlines() if ln.startswith("| 1e")]
    stated = {(r[0], r[2], r[3]) for r in table}
    for e in paired:
        key = (dose_label(e["dose"]), f"`{e['arm_a']}` − `{e['arm_b']}`", e["quantity"])
        excludes_zero = not (e["low"] <= 0 <= e["high"])
        supported = excludes_zero and not (abs(e["diff"]) < 0.05)  # every tiny arm pair has a
        assert (key in stated) == supported, e                     # weight-dependent arm
        if supported:
            (r,) = [r for r in table if (r[0], r[2], r[3]) == key]
            assert r[4] == f"{e['diff']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"
            assert r[5] == f"`{e['arm_a'] if e['diff'] > 0 else e['arm_b']}`"
        elif excludes_zero:
            assert f"{e['diff']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]" in stats
    n_none = sum(e["low"] <= 0 <= e["high"] for e in paired)
    assert f"{n_none} of {len(paired)} arm pairs x components" in stats or n_none == 0
    # figures too large to copy are named by their place in the results tree
    assert f"`{tiny_run.as_posix()}/report/figures/`" in page and "- `ssim_grid.png`" in page
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_verdict_and_a_failed_check(tiny_run, tmp_path):
    page = RP.write_results_page(tiny_run, tmp_path / "ok.md", figures="link").read_text()
    report = json.loads((tiny_run / "report" / "verification_report.json").read_text())
    n = len(report["checks"])
    assert report["passed"] is True
    assert f"**Verification: passed** ({n} of {n} checks passed)." in page
    for c in report["checks"]:
        assert f"| `{c['name']}` | pass |" in page

    run = _copy_run(tiny_run, tmp_path / "run")
    for c in report["checks"]:
        if c["name"] == "loss_fell":
            c.update(passed=False, detail="pinn_g1/1e3_dense_r0: the loss did not fall")
    report.update(passed=False, failed=["loss_fell"])
    (run / "report" / "verification_report.json").write_text(json.dumps(report))
    r = subprocess.run([sys.executable, "-m", "ptycho.reporting.results_page", str(run),
                        "--out", str(tmp_path / "failed.md"), "--figures", "link"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "failed.md").read_text()
    assert f"**Verification: FAILED** (1 of {n} checks failed: `loss_fell`)." in page
    assert "| `loss_fell` | **FAILED** | pinn_g1/1e3_dense_r0: the loss did not fall |" in page
    assert "**Verification: passed**" not in page


def test_missing_report_is_an_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ptycho.reporting.results_page", str(tmp_path),
                        "--out", str(tmp_path / "x.md")], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 1 and "metrics table not found" in r.stderr
    assert not (tmp_path / "x.md").exists()


def test_replicates_show_the_mean_its_t_interval_and_every_value():
    from scipy.stats import t as student

    vals = [0.40, 0.43, 0.46]
    reps = [{"dose": 1000.0, "overlap": "dense", "arm": "pinn_g1", "quantity": "phase",
             "metric": "ssim", "value": v, "replicate": k, "ci_low": v - 0.01,
             "ci_high": v + 0.01} for k, v in enumerate(vals)]
    half = student.ppf(0.975, 2) * 0.03 / math.sqrt(3)  # sd of 0.40, 0.43, 0.46 is 0.03
    assert RP._estimate_text(reps) == (
        f"0.430 [{0.43 - half:.3f}, {0.43 + half:.3f}]; replicates: 0.400 [0.390, 0.410], "
        "0.430 [0.420, 0.440], 0.460 [0.450, 0.470]")


def _loss(arm, loss, low, high, quantity="phase"):
    from ptycho.reporting.robustness import LOSS_COLUMNS

    e = dict.fromkeys(LOSS_COLUMNS, math.nan)
    e.update(kind="probe", error_level="probe25", error_value=0.25, arm=arm, dose=1e5,
             overlap="dense", quantity=quantity, metric="ssim", exact=0.9, value=0.9 - loss,
             loss=loss, loss_low=low, loss_high=high, n_replicates=1, method="paired bootstrap",
             data_probe_error=0.25, arm_refined="probe" if arm == "iterative" else "")
    return e


def test_robustness_section_reads_losses_against_intervals_and_the_spread(tmp_path):
    from ptycho.reporting.robustness import read_losses_csv, write_losses_csv

    losses = [_loss("iterative", 0.003, -0.002, 0.008),   # interval holds zero: no loss
              _loss("iterative", 0.018, 0.010, 0.026, "amplitude"),  # solver: a loss
              _loss("pinn_g1", 0.032, 0.020, 0.044),      # network, below the spread
              _loss("pinn_g2", 0.080, 0.060, 0.100)]      # network, beyond the spread
    write_losses_csv(losses, tmp_path / "robustness.csv")
    back = read_losses_csv(tmp_path / "robustness.csv")
    lines = RP.robustness_section(back, 0.95, 0.05)
    assert lines[0] == "## Robustness to model errors"
    note = next(line for line in lines if "losses have a paired interval" in line)
    assert note.startswith("3 of 4 losses") and "2 of them are also beyond the 0.05" in note
    rows = [line for line in lines if line.startswith("| probe25 |")]
    assert len(rows) == 4
    assert "| iterative | phase | 0.900 | 0.897 | +0.003 [-0.002, +0.008] |" in rows[0]
    assert rows[0].endswith("| probe |") and rows[2].endswith("| nothing |")
    assert RP.robustness_section([], 0.95, 0.05) == []
