"""Quality against wall time per cell: network arms as points, the solver arms' snapshots as
curves.

input:  metrics (list of metrics.json)
output: png
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.frontier import plot_quality_time
    from ptycho.reporting.records import load_records

    plot_quality_time(load_records(smk.input.metrics), smk.output.png)


run_job(snakemake, main)  # noqa: F821
