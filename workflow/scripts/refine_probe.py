"""refine_train_probe: a cell's given train split -> its probe refined by pty-chi LSQML
(input train; output probe, figure; params study: the study dict, data/probe_refinement)."""

from ptycho import api
from ptycho.runner import run_job


def main(smk):
    study = api.load_study(smk.params.study)
    api.refine_probe(study, smk.input.train, smk.output.probe, figure=smk.output.figure,
                     threads=smk.threads)


run_job(snakemake, main)  # noqa: F821
