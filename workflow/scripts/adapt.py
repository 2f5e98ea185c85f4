"""Snakemake adapter: the adapted arm of one cell -- fine-tune the cell's trained PINN on its test
split's counts (no labels), then reconstruct that test split with it (rule adapt_pinn).

input: model, bundle (the trained PINN), test; output: model, bundle, history, curve, recon;
params: study (dict), scale, overlap, source_arm (the trained PINN's arm id); threads; wildcards:
replicate (the cell replicate).
"""

from ptycho.config import StudyConfig
from ptycho.runner import run_job


def main(smk) -> None:
    from ptycho.reconstruct.inference import reconstruct_with_study
    from ptycho.training.adapt import adapt_arm

    study = StudyConfig.from_dict(smk.params.study)
    scale = study.scale(smk.params.scale)
    bundle = adapt_arm(smk.input.model, smk.input.bundle, smk.input.test, scale.adaptation,
                       scale.training.batch_size, study.seeds.training, smk.output.model,
                       smk.output.bundle, smk.output.history, smk.output.curve,
                       threads=smk.threads, expected_arm=smk.params.source_arm,
                       replicate=int(smk.wildcards.replicate))
    reconstruct_with_study(smk.output.model, smk.output.bundle, smk.input.test, study,
                           smk.params.scale, smk.params.overlap, smk.output.recon,
                           threads=smk.threads, tmp_dir=getattr(smk.resources, "tmpdir", None),
                           extra_time_s=bundle["fit_time_s"], expected_arm=bundle["arm"],
                           extra_info={"adaptation_s": bundle["fit_time_s"],
                                       "adaptation": bundle["adaptation"],
                                       "source_arm": bundle["source_arm"]})


run_job(snakemake, main)  # noqa: F821
