"""import_dataset: one cell of a study on external data -> train.h5, test.h5, summary.json,
summary.png (the outputs of simulate_dataset).

input: the cell's external files; params: study (dict), scale; wildcards: dose, overlap.
"""

from ptycho import api
from ptycho.runner import run_job


def main(smk):
    study = api.load_study(smk.params.study)
    api.import_cell(study, smk.params.scale, smk.wildcards.dose, smk.wildcards.overlap,
                    train=smk.output.train, test=smk.output.test, summary=smk.output.summary,
                    figure=smk.output.figure)


run_job(snakemake, main)  # noqa: F821
