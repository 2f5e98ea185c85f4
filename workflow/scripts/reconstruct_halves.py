"""Snakemake adapter: an arm's reconstructions of the two half scans of a test split.

input: half1, half2 (and model, bundle for a network arm); output: half1, half2;
params: study (dict), scale, overlap, arm; threads. One framework per job (TensorFlow or pty-chi).
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    study = api.load_study(smk.params.study)
    arm = smk.params.arm
    model = None if study.identity(arm).is_solver else (smk.input.model, smk.input.bundle)
    for half, out in ((smk.input.half1, smk.output.half1), (smk.input.half2, smk.output.half2)):
        api.reconstruct(study, smk.params.scale, arm, half, out, model=model, threads=smk.threads,
                        tmp_dir=getattr(smk.resources, "tmpdir", None), overlap=smk.params.overlap)


run_job(snakemake, main)  # noqa: F821
