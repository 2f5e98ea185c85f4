"""Snakemake adapter: pty-chi LSQML reconstruction of one test split, from a flat start (arm
'iterative') or, given input ``start`` (a network arm's recon file) and params ``start_arm``, from
that network's reconstruction (arm 'hybrid').

Runs in its own process (never beside TensorFlow): see shared/DESIGN.md, "Known traps".
"""

from ptycho.config import StudyConfig
from ptycho.reconstruct.io import write_reconstruction
from ptycho.reconstruct.iterative import load_network_start, reconstruct_iterative
from ptycho.runner import run_job


def main(smk):
    study = StudyConfig.from_dict(smk.params.study)
    cfg = study.scale(smk.params.scale).iterative
    start_path = getattr(smk.input, "start", None)
    start = None if start_path is None else load_network_start(start_path, smk.params.start_arm)
    rec = reconstruct_iterative(smk.input.test, cfg, threads=smk.threads, start=start)
    rec.overlap_view = smk.params.overlap
    write_reconstruction(smk.output.recon, rec)


run_job(snakemake, main)  # noqa: F821
