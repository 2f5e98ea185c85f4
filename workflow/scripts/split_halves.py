"""Snakemake adapter: the even and the odd positions of a test split as two test files (for the
ground-truth-free half-scan FRC). input: test; output: half1, half2."""

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    api.split_halves(smk.input.test, half1=smk.output.half1, half2=smk.output.half2)


run_job(snakemake, main)  # noqa: F821
