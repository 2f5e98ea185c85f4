"""Snakemake adapter: the adapted arm of one cell -- fine-tune the cell's trained PINN on its test
split's counts (no labels), then reconstruct that test split with it (rule adapt_pinn).

input: model, bundle (the trained PINN), test; output: model, bundle, history, curve, recon;
params: study (dict), scale, overlap, source_arm (the trained PINN's arm id, checked against its
bundle); threads; wildcards: replicate (the cell replicate).
"""

from ptycho import api
from ptycho.arms.spec import ArmIdentity
from ptycho.errors import TrainingError
from ptycho.runner import run_job


def main(smk) -> None:
    study = api.load_study(smk.params.study)
    want = ArmIdentity.builtin_id("pinn", study.adapted_gridsize).name
    if smk.params.source_arm != want:
        raise TrainingError(f"{smk.input.bundle}: the adapted arm fine-tunes {want}, this rule "
                            f"names {smk.params.source_arm}")
    adapted = api.adapt_arm(study, smk.params.scale, (smk.input.model, smk.input.bundle),
                            smk.input.test, out_model=smk.output.model, bundle=smk.output.bundle,
                            history=smk.output.history, curve=smk.output.curve,
                            threads=smk.threads, replicate=int(smk.wildcards.replicate))
    b = adapted.info
    # the fine-tuning on the test scan is part of this arm's reconstruction time
    api.reconstruct(study, smk.params.scale, adapted.arm, smk.input.test, smk.output.recon,
                    model=adapted, threads=smk.threads,
                    tmp_dir=getattr(smk.resources, "tmpdir", None), overlap=smk.params.overlap,
                    extra_time_s=b["fit_time_s"],
                    extra_info={"adaptation_s": b["fit_time_s"], "adaptation": b["adaptation"],
                                "source_arm": b["source_arm"]})


run_job(snakemake, main)  # noqa: F821
