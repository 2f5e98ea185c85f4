"""apply_refined_probe: a cell's given train and test splits with the refined probe as their
nominal /probe (input probe, train, test; output train, test)."""

from ptycho import api
from ptycho.runner import run_job


def main(smk):
    api.apply_probe(smk.input.probe, smk.input.train, smk.input.test, train=smk.output.train,
                    test=smk.output.test)


run_job(snakemake, main)  # noqa: F821
