"""Robustness to model errors (a study with an errors section): each arm's SSIM against the error
level, one figure per error kind, and each arm's loss against its exact-cell score.

input:  csv (metrics.csv with the error columns), metrics (metrics.json of the exact cells),
        error_metrics (metrics.json of the cells at error levels)
output: csv (robustness.csv), figure_<kind> (figures/robustness_<kind>.png per error kind)
params: study (the study dict), kinds (the error kinds of the study, in figure order)
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.records import load_records, read_metrics_csv
    from ptycho.reporting.robustness import (
        level_losses,
        paired_intervals,
        plot_level_curves,
        write_losses_csv,
    )

    rows = read_metrics_csv(smk.input.csv, levels=True)
    records = load_records(list(smk.input.metrics) + list(smk.input.error_metrics))
    write_losses_csv(level_losses(rows, paired=paired_intervals(records)), smk.output.csv)
    for kind in smk.params.kinds:
        plot_level_curves(rows, kind, getattr(smk.output, f"figure_{kind}"))


run_job(snakemake, main)  # noqa: F821
