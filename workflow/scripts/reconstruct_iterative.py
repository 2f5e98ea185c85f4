"""Snakemake adapter: pty-chi LSQML reconstruction of one test split, from a flat start (arm
'iterative') or, given input ``start`` (a network arm's recon file) and params ``start_arm``, from
that network's reconstruction (arm 'hybrid').

Runs in its own process (never beside TensorFlow): see docs/conventions.md, "Two frameworks, two
processes".
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk):
    study = api.load_study(smk.params.study)
    start = getattr(smk.input, "start", None)
    api.reconstruct(study, smk.params.scale, "hybrid" if start else "iterative", smk.input.test,
                    smk.output.recon, threads=smk.threads, overlap=smk.params.overlap,
                    start=start)


run_job(snakemake, main)  # noqa: F821
