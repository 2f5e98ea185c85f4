"""Ground-truth-free grids: data residual and half-scan FRC 1/7 per arm, dose and overlap.

input: csv (metrics.csv); output: residual, frc (PNG); params: study (dict).
"""

from ptycho.runner import run_job


def main(smk) -> None:
    from ptycho.reporting.grids import plot_gt_free_grids

    plot_gt_free_grids(smk.input.csv, smk.output.residual, smk.output.frc,
                       overlap_targets=dict(smk.params.study.get("overlaps", {})))


run_job(snakemake, main)  # noqa: F821
