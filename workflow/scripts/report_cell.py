"""Side-by-side figure of one cell: ground truth, every arm (aligned) and its error maps.

input:  aligned (list of aligned.h5, same order as params.arms), metrics (list of metrics.json,
        same order)
output: png
params: arms (list of arm ids), title
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.comparison import plot_cell_comparison

    plot_cell_comparison(list(smk.input.aligned), list(smk.params.arms), list(smk.input.metrics),
                         smk.output.png, smk.params.title)


run_job(snakemake, main)  # noqa: F821
