"""simulate_dataset (and import_dataset, for a study on external data): one dose x overlap cell
replicate -> train.h5, test.h5, summary.json, summary.png (wildcards dose, overlap, replicate;
params error_level: '' for the exact cell, else the model-error level label, docs/robustness.md)."""

from ptycho import api
from ptycho.runner import run_job


def main(smk):
    study = api.load_study(smk.params.study)
    make_cell = api.import_cell if study.data.external else api.simulate_cell
    level = getattr(smk.params, "error_level", "") or ""
    make_cell(study, smk.params.scale, smk.wildcards.dose, smk.wildcards.overlap,
              train=smk.output.train, test=smk.output.test, summary=smk.output.summary,
              figure=smk.output.figure, replicate=int(smk.wildcards.replicate),
              **({"error_level": level} if level else {}))


run_job(snakemake, main)  # noqa: F821
