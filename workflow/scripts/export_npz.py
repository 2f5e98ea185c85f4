"""Snakemake adapter: a split (input dataset) or a reconstruction (input recon, with its test
split as dataset) as a PtychoPINN NPZ. output: npz; params: study (dict: its geometry)."""

from ptycho.runner import run_job


def main(smk) -> None:
    from ptycho import api
    from ptycho.interop.npz import export_npz
    from ptycho.reconstruct.io import read_reconstruction

    study = api.load_study(smk.params.study)
    recon = getattr(smk.input, "recon", None)
    export_npz(smk.input.dataset, smk.output.npz, study.geometry,
               reconstruction=read_reconstruction(recon) if recon else None)


run_job(snakemake, main)  # noqa: F821
