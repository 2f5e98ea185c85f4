"""Quality against fluence and the dose-resolution power-law fits.

input:  csv (metrics.csv), metrics (list of metrics.json: the FRC's measurable band per cell)
output: csv (dose_resolution.csv), fluence (PNG), fits (PNG)
params: study (dict: overlap targets and the optional equal-fluence view)
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting.dose_resolution import (
        collect_frc_limits,
        dose_resolution_fits,
        plot_dose_resolution,
        plot_fluence,
        write_fits_csv,
    )
    from ptycho.reporting.records import load_records, read_metrics_csv

    study = smk.params.study
    rows = read_metrics_csv(smk.input.csv)
    limits = collect_frc_limits(load_records(smk.input.metrics))
    fits = dose_resolution_fits(rows, limits)
    write_fits_csv(fits, smk.output.csv)
    view = study.get("equal_fluence") or {}
    plot_fluence(rows, smk.output.fluence, overlap_targets=study.get("overlaps"),
                 equal_fluence_cells=[(c["dose"], c["overlap"]) for c in view.get("cells", [])])
    plot_dose_resolution(rows, fits, smk.output.fits, limits)


run_job(snakemake, main)  # noqa: F821
