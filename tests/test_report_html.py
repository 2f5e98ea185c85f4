"""The HTML report of the tiny study (``snakemake --report``): its front page states the verdict of
every check and the answer; a failed check shows as failed in the verdict and the summary."""

import json
import re
import shutil
from pathlib import Path

import pytest

from test_reporting import _run_script
from test_workflow import snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_html(tiny_run, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("html_report") / "report.html"
    r = snakemake(tiny_run.parents[2], "--report", str(out), "phase_g_scaled", timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return out.read_text()


def _workflow_description(page: str) -> str:
    """The landing page's text (the report embeds it as a JSON string)."""
    m = re.search(r"workflow_desc\s*=\s*(\".*?(?<!\\)\")", page, re.S)
    assert m, "no workflow description in the report"
    return json.loads(m.group(1))


def test_front_page_has_the_verdict_and_the_answer(tiny_run, report_html):
    verification = json.loads((tiny_run / "report" / "verification_report.json").read_text())
    front = _workflow_description(report_html)
    n = len(verification["checks"])
    assert f"Verification: passed</strong> ({n} of {n} checks passed)" in front
    assert "Answer: which arm reconstructs best" in front and "Overlap view" in front
    for c in verification["checks"]:
        assert re.search(rf"<code>{c['name']}</code></td><td class=\"pass\">pass</td>", front), c
    assert "FAILED" not in front
    # the pages of the verdict and of the summary are shown inline (HTML), not downloaded
    for name in ("verdict.html", "summary.html"):
        assert name in report_html
    assert "1. Verdict and answer" in report_html and "5. Comparisons per cell" in report_html


def test_a_failed_check_shows_as_failed(tiny_run, tmp_path, monkeypatch):
    from ptycho.reporting.records import read_metrics_csv
    from ptycho.reporting.results_page import metric_paths
    from ptycho.reporting.verdict import run_end_lines

    run = tmp_path / "results" / "tiny" / "scaled"
    (run / "report").mkdir(parents=True)
    for name in ("metrics.csv", "verification_report.json"):
        shutil.copy2(tiny_run / "report" / name, run / "report" / name)
    report = json.loads((run / "report" / "verification_report.json").read_text())
    for c in report["checks"]:
        if c["name"] == "loss_fell":
            c.update(passed=False, detail="pinn_g1/1e3_dense_r0: the loss did not fall")
    report.update(passed=False, failed=["loss_fell"])
    (run / "report" / "verification_report.json").write_text(json.dumps(report))
    rows = read_metrics_csv(tiny_run / "report" / "metrics.csv")
    out = {k: str(run / "report" / f) for k, f in
           (("md", "summary.md"), ("html", "summary.html"), ("verdict", "verdict.html"))}
    study = json.loads((tiny_run / "report" / "provenance.json").read_text())["config"]
    _run_script("report_summary.py", monkeypatch,
                input={"metrics": [str(p) for p in metric_paths(tiny_run, rows)],
                       "report": str(run / "report" / "verification_report.json")},
                output=out, params={"study": study, "scale": "scaled"})
    n = len(report["checks"])
    md = Path(out["md"]).read_text()
    assert md.splitlines()[2] == (f"**Verification: FAILED** (1 of {n} checks failed: "
                                  "`loss_fell`).")
    assert "| `loss_fell` | **FAILED** | pinn_g1/1e3_dense_r0: the loss did not fall |" in md
    assert "## Answer: which arm reconstructs best" in md
    for page in (Path(out["verdict"]).read_text(), Path(out["html"]).read_text()):
        assert 'class="verdict bad"' in page and "Verification: FAILED" in page
        assert ('<td><code>loss_fell</code></td><td class="fail"><strong>FAILED</strong></td>'
                in page)
    lines = run_end_lines([run])
    assert lines[0] == (f"Verification FAILED: 1 of {n} checks failed (loss_fell), study tiny "
                        "(scaled scale).")
    assert f"{run / 'report' / 'summary.html'}" in lines[1]
