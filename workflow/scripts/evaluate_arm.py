"""Snakemake adapter: evaluate one arm's reconstruction against its test split.

input: recon, test; output: metrics, aligned; params: study (dict: its intervals and bootstrap
seed set the confidence intervals).
"""

from ptycho.config import StudyConfig
from ptycho.evaluation import evaluate_reconstruction
from ptycho.runner import run_job


def main(smk) -> None:
    study = StudyConfig.from_dict(smk.params.study)
    evaluate_reconstruction(smk.input.recon, smk.input.test, smk.output.metrics, smk.output.aligned,
                            intervals=study.intervals, seed=study.seeds.bootstrap)


run_job(snakemake, main)  # noqa: F821
