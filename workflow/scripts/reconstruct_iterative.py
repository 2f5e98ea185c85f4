"""Snakemake adapter: pty-chi LSQML reconstruction of one test split (arm 'iterative').

Runs in its own process (never beside TensorFlow): see shared/DESIGN.md, "Known traps".
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk):
    study = api.load_study(smk.params.study)
    api.reconstruct(study, smk.params.scale, "iterative", smk.input.test, smk.output.recon,
                    threads=smk.threads, overlap=smk.params.overlap)


run_job(snakemake, main)  # noqa: F821
