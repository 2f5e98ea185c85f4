"""Tidy metrics table and the quality-time table of a study (the summary, which states the
verification verdict, is written after the verification: report_summary.py).

input:  metrics (list of metrics.json of the exact cells), error_metrics (list of metrics.json of
        the cells at model-error levels; empty without an errors section)
output: csv (metrics.csv), quality_time (quality_time.csv)
params: study (the study dict), scale
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.frontier import collect_cells, matched_quality, write_quality_time_csv
    from ptycho.reporting.records import (
        any_refined,
        collect_metrics,
        load_records,
        write_metrics_csv,
    )

    records = load_records(smk.input.metrics)  # every metrics.json read once
    error_paths = list(getattr(smk.input, "error_metrics", None) or [])
    error_records = load_records(error_paths)
    study = smk.params.study["study"]
    rows = collect_metrics(records + error_records, study, smk.params.scale)
    frontier = matched_quality(collect_cells(records))  # the exact cells
    # the error columns only for a study with model-error levels or an arm that refines its probe
    # or positions: otherwise the table is unchanged
    write_metrics_csv(rows, smk.output.csv,
                      errors=bool(error_paths) or any_refined(records + error_records))
    write_quality_time_csv(frontier, smk.output.quality_time, study, smk.params.scale)


run_job(snakemake, main)  # noqa: F821
