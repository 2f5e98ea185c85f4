"""simulate_dataset: one dose x overlap cell replicate -> train.h5, test.h5, summary.json,
summary.png (wildcards dose, overlap, replicate)."""

from ptycho.config import StudyConfig
from ptycho.data.generate import simulate_cell
from ptycho.data.io import write_json
from ptycho.reporting.dataset_figure import plot_dataset_summary
from ptycho.runner import run_job


def main(smk):
    study = StudyConfig.from_dict(smk.params.study)
    summary = simulate_cell(study, smk.params.scale, smk.wildcards.dose, smk.wildcards.overlap,
                            smk.output.train, smk.output.test,
                            replicate=int(smk.wildcards.replicate))
    plot_dataset_summary(smk.output.train, smk.output.test, smk.output.figure)
    write_json(smk.output.summary, summary)


run_job(snakemake, main)  # noqa: F821
