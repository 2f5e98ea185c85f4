"""Snakemake adapter: evaluate one arm's reconstruction against its test split."""

from ptycho.evaluation import evaluate_reconstruction
from ptycho.runner import run_job


def main(smk) -> None:
    evaluate_reconstruction(smk.input.recon, smk.input.test, smk.output.metrics, smk.output.aligned)


run_job(snakemake, main)  # noqa: F821
