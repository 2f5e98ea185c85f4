"""Tidy metrics table, the quality-time table and the Markdown summary of a study.

input:  metrics (list of metrics.json)
output: csv (metrics.csv), md (summary.md), quality_time (quality_time.csv)
params: study (the study dict), scale
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.frontier import (
        collect_cells,
        frontier_markdown,
        matched_quality,
        write_quality_time_csv,
    )
    from ptycho.reporting.records import (
        collect_metrics,
        collect_references,
        collect_timing,
        load_records,
        write_metrics_csv,
    )
    from ptycho.reporting.tables import collect_uncertainty, write_summary_md

    records = load_records(smk.input.metrics)  # every metrics.json read once
    truth = (smk.params.study.get("data") or {}).get("ground_truth", True)
    study = smk.params.study["study"]
    rows = collect_metrics(records, study, smk.params.scale)
    frontier = matched_quality(collect_cells(records))
    write_metrics_csv(rows, smk.output.csv)
    write_quality_time_csv(frontier, smk.output.quality_time, study, smk.params.scale)
    write_summary_md(rows, collect_timing(records), smk.output.md,
                     references=collect_references(records),
                     uncertainty=collect_uncertainty(records, rows, smk.params.study)
                     if truth else None,
                     sections=[frontier_markdown(frontier)])


run_job(snakemake, main)  # noqa: F821
