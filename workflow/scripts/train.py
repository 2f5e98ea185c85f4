"""Snakemake adapter: train one network arm of one grid cell and reconstruct the cell's test split
with it (rules train_pinn, train_baseline).

input: train, test; output: model, bundle, history, curve, recon; params: study (dict), scale, arm,
overlap; threads; wildcards: replicate (the cell replicate, whose seeds the training draws).
"""

from ptycho.config import StudyConfig
from ptycho.runner import run_job


def main(smk) -> None:
    from ptycho.reconstruct.inference import reconstruct_with_study
    from ptycho.training.fit import train_arm

    study = StudyConfig.from_dict(smk.params.study)
    train_arm(smk.params.arm, smk.input.train, study, smk.params.scale, smk.output.model,
              smk.output.bundle, smk.output.history, smk.output.curve, threads=smk.threads,
              replicate=int(smk.wildcards.replicate))
    reconstruct_with_study(smk.output.model, smk.output.bundle, smk.input.test, study,
                           smk.params.scale, smk.params.overlap, smk.output.recon,
                           threads=smk.threads, tmp_dir=getattr(smk.resources, "tmpdir", None),
                           expected_arm=smk.params.arm)


run_job(snakemake, main)  # noqa: F821
