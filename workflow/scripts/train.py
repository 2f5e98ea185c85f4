"""Snakemake adapter: train one network arm of one grid cell (rules train_pinn, train_baseline).

input: train; output: model, bundle, history, curve; params: study (dict), scale, arm; threads.
"""

from ptycho.config import StudyConfig
from ptycho.runner import run_job


def main(smk) -> None:
    from ptycho.training.fit import train_arm

    study = StudyConfig.from_dict(smk.params.study)
    train_arm(smk.params.arm, smk.input.train, study, smk.params.scale, smk.output.model,
              smk.output.bundle, smk.output.history, smk.output.curve, threads=smk.threads)


run_job(snakemake, main)  # noqa: F821
