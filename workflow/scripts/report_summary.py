"""The summary of a verified study: ``summary.md`` and ``summary.html`` (the verdict and the answer
first, then every table), and ``verdict.html`` (the verdict, the answer and every check: the
front page of the Snakemake report).

input:  metrics (list of metrics.json), report (verification_report.json), robustness (a list:
        robustness.csv of a study with model-error levels, else empty)
output: md (summary.md), html (summary.html), verdict (verdict.html)
params: study (the study dict), scale
Runs after verify_study (the summary states its verdict) and before assert_verified, so a failed
verification is shown in the summary too.
"""

import logging

from ptycho.runner import run_job

log = logging.getLogger("ptycho.report")


def main(smk):
    from ptycho.data.io import read_json, write_text
    from ptycho.reporting.frontier import collect_cells, frontier_markdown, matched_quality
    from ptycho.reporting.html import markdown_to_html, verdict_banner, write_html
    from ptycho.reporting.records import (
        collect_metrics,
        collect_references,
        collect_timing,
        load_records,
    )
    from ptycho.reporting.tables import collect_uncertainty, summary_markdown
    from ptycho.reporting.verdict import front_markdown, verdict_text

    study = smk.params.study
    records = load_records(smk.input.metrics)  # every metrics.json read once
    truth = (study.get("data") or {}).get("ground_truth", True)
    rows = collect_metrics(records, study["study"], smk.params.scale)
    references = collect_references(records)
    uncertainty = collect_uncertainty(records, rows, study) if truth else None
    paired = [e for e in (uncertainty or {}).get("paired") or [] if e["metric"] == "ssim"]
    verification = read_json(smk.input.report, "verification report")
    front = front_markdown(verification, rows, paired, references,
                           overlap_targets=dict(study.get("overlaps") or {}))
    text = summary_markdown(rows, collect_timing(records), references=references,
                            uncertainty=uncertainty,
                            sections=[frontier_markdown(matched_quality(collect_cells(records)))]
                            + _robustness(smk),
                            front=front)
    write_text(smk.output.md, text)
    title = f"Study {study['study']} ({smk.params.scale} scale)"
    head, _, verdict_md, rest = text.split("\n", 3)  # the title, the verdict line, the rest
    assert verdict_md == front[0]
    write_html(smk.output.html, f"{title}: summary",
               markdown_to_html(head) + "\n" + verdict_banner(verification) + "\n"
               + markdown_to_html(rest))
    write_html(smk.output.verdict, f"{title}: verdict and answer",
               markdown_to_html(f"# {title}: verdict and answer") + "\n"
               + verdict_banner(verification) + "\n" + markdown_to_html("\n".join(front[2:])))
    log.info("%s", verdict_text(verification))


def _robustness(smk) -> list:
    """The robustness section (each arm's loss against its exact-cell score), if the study has
    model-error levels."""
    paths = list(getattr(smk.input, "robustness", None) or [])
    if not paths:
        return []
    from ptycho.reporting.robustness import losses_markdown, read_losses_csv

    return ["\n".join(losses_markdown(read_losses_csv(paths[0])))]


run_job(snakemake, main)  # noqa: F821
