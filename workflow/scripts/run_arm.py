"""Snakemake adapter: one variant (or plugin) arm on one cell (ptycho.arms.registry.run_arm).

input: test (and train, start as the arm declares), or half1, half2 (and model: a training
variant's model directory) for the two half scans; output: recon (and model: the directory a
training variant trains into), or half1, half2; params: study (dict), scale, overlap, arm,
replicate; threads.
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    study = api.load_study(smk.params.study)
    common = {"overlap": smk.params.overlap, "replicate": int(smk.params.replicate),
              "threads": smk.threads}
    if hasattr(smk.output, "half1"):
        model = getattr(smk.input, "model", None)
        for half, out in ((smk.input.half1, smk.output.half1), (smk.input.half2, smk.output.half2)):
            api.run_arm(study, smk.params.scale, smk.params.arm, half, out, model_dir=model,
                        train=False, **common)
        return
    api.run_arm(study, smk.params.scale, smk.params.arm, smk.input.test, smk.output.recon,
                train_path=getattr(smk.input, "train", None),
                start_path=getattr(smk.input, "start", None),
                model_dir=getattr(smk.output, "model", None), **common)


run_job(snakemake, main)  # noqa: F821
