"""Snakemake adapter: train one network arm of one grid cell and reconstruct the cell's test split
with it (rules train_pinn, train_baseline).

input: train, test; output: model, bundle, history, curve, recon; params: study (dict), scale, arm,
overlap; threads; wildcards: replicate (the cell replicate, whose seeds the training draws).
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    study = api.load_study(smk.params.study)
    trained = api.train_arm(study, smk.params.scale, smk.params.arm, smk.input.train,
                            model=smk.output.model, bundle=smk.output.bundle,
                            history=smk.output.history, curve=smk.output.curve,
                            threads=smk.threads, replicate=int(smk.wildcards.replicate))
    api.reconstruct(study, smk.params.scale, smk.params.arm, smk.input.test, smk.output.recon,
                    model=trained, threads=smk.threads,
                    tmp_dir=getattr(smk.resources, "tmpdir", None), overlap=smk.params.overlap)


run_job(snakemake, main)  # noqa: F821
