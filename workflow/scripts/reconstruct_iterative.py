"""Snakemake adapter: pty-chi LSQML reconstruction of one test split (arm 'iterative').

Runs in its own process (never beside TensorFlow): see shared/DESIGN.md, "Known traps".
"""

from ptycho.config import StudyConfig
from ptycho.reconstruct.io import write_reconstruction
from ptycho.reconstruct.iterative import reconstruct_iterative
from ptycho.runner import run_job


def main(smk):
    study = StudyConfig.from_dict(smk.params.study)
    cfg = study.scale(smk.params.scale).iterative
    rec = reconstruct_iterative(smk.input.test, cfg, threads=smk.threads)
    rec.overlap_view = smk.params.overlap
    write_reconstruction(smk.output.recon, rec)


run_job(snakemake, main)  # noqa: F821
