"""Snakemake adapter: a split (input dataset; output diffraction, product) or a reconstruction
(input recon, dataset = its test split, history = a network arm's training history; output
product) as ptychodus files. params: study (dict: its geometry). Needs the interop extra."""

from ptycho.runner import run_job


def main(smk) -> None:
    from pathlib import Path

    from ptycho import api
    from ptycho.errors import PtychoError
    from ptycho.interop.external import INTEROP_HINT
    from ptycho.reconstruct.io import read_reconstruction
    from ptycho.reporting.records import read_history

    try:
        from ptycho.interop.ptychodus import export_reconstruction, export_split
    except ImportError as exc:
        raise PtychoError(f"exporting ptychodus files needs ptychodus ({exc}); install it with: "
                          f"{INTEROP_HINT}") from exc
    study = api.load_study(smk.params.study)
    recon = getattr(smk.input, "recon", None)
    if recon is None:
        export_split(smk.input.dataset, Path(smk.output.product).parent, study.geometry)
        return
    rec = read_reconstruction(recon)
    history = list(getattr(smk.input, "history", []))
    losses = rec.info.get("cost_history") or (read_history(history[0])["val_loss"] if history
                                              else [])
    export_reconstruction(rec, smk.input.dataset, smk.output.product, study.geometry, losses)


run_job(snakemake, main)  # noqa: F821
