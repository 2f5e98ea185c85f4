"""Snakemake adapter: evaluate one arm's reconstruction against its test split.

input: recon, test, halves (the arm's two half-scan reconstructions; empty with ground truth);
output: metrics, aligned; params: study (dict: its intervals and bootstrap seed set the confidence
intervals).
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    study = api.load_study(smk.params.study)
    api.evaluate(smk.input.recon, smk.input.test, metrics=smk.output.metrics,
                 aligned=smk.output.aligned, halves=list(getattr(smk.input, "halves", [])),
                 study=study)


run_job(snakemake, main)  # noqa: F821
