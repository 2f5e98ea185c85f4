"""Snakemake adapter: evaluate one arm's reconstruction against its test split.

input: recon, test, halves (the arm's two half-scan reconstructions; empty with ground truth);
output: metrics, aligned.
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    api.evaluate(smk.input.recon, smk.input.test, metrics=smk.output.metrics,
                 aligned=smk.output.aligned, halves=list(getattr(smk.input, "halves", [])))


run_job(snakemake, main)  # noqa: F821
