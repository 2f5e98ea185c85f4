"""Snakemake adapter: reconstruct the test split of a cell with a trained network arm.

input: model, bundle, test; output: recon; params: study (dict), scale, overlap, arm;
threads.
"""

from ptycho.config import StudyConfig
from ptycho.runner import run_job


def main(smk) -> None:
    from ptycho.reconstruct.inference import reconstruct_network
    from ptycho.reconstruct.io import write_reconstruction

    study = StudyConfig.from_dict(smk.params.study)
    scale = study.scale(smk.params.scale)
    rec = reconstruct_network(smk.input.model, smk.input.bundle, smk.input.test,
                              scale.inference_batch_size, threads=smk.threads,
                              phase_sync=study.stitching.phase_sync,
                              refine_iterations=study.stitching.refine_iterations,
                              tmp_dir=getattr(smk.resources, "tmpdir", None),
                              expected_arm=smk.params.arm)
    rec.overlap_view = smk.params.overlap
    write_reconstruction(smk.output.recon, rec)


run_job(snakemake, main)  # noqa: F821
