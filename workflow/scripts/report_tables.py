"""Tidy metrics table and Markdown summary of a study.

input:  metrics (list of metrics.json)
output: csv (metrics.csv), md (summary.md)
params: study (the study dict), scale
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.tables import (
        collect_metrics,
        collect_references,
        collect_timing,
        write_metrics_csv,
        write_summary_md,
    )
    from ptycho.reporting.uncertainty import collect_uncertainty

    metrics = list(smk.input.metrics)
    rows = collect_metrics(metrics, smk.params.study["study"], smk.params.scale)
    write_metrics_csv(rows, smk.output.csv)
    write_summary_md(rows, collect_timing(metrics), smk.output.md,
                     references=collect_references(metrics),
                     uncertainty=collect_uncertainty(metrics, rows, smk.params.study))


run_job(snakemake, main)  # noqa: F821
