"""Study figures from the metrics table: SSIM / MS-SSIM grids, delta grid, metrics versus dose,
FRC curves and training losses.

input:  csv (metrics.csv), metrics (list of metrics.json: FRC curves and the bootstrap records
        of the paired differences), histories (list of history.csv)
output: ssim_grid, ms_ssim_grid, delta_grid, metric_vs_dose, frc, losses (PNG)
params: history_labels (one 'arm dose overlap' label per history); optional study (dict) to label
        overlap views with their target f
"""

from ptycho.runner import run_job


def main(smk):
    from ptycho.reporting import grids
    from ptycho.reporting.dose_resolution import collect_frc_limits
    from ptycho.reporting.records import collect_references, load_records
    from ptycho.reporting.uncertainty import collect_paired_differences

    study = getattr(smk.params, "study", None)
    targets = dict(study.get("overlaps", {})) if isinstance(study, dict) else None
    csv = smk.input.csv
    grids.plot_metric_grid(csv, smk.output.ssim_grid, "ssim", overlap_targets=targets)
    grids.plot_metric_grid(csv, smk.output.ms_ssim_grid, "ms_ssim", overlap_targets=targets)
    records = load_records(smk.input.metrics)  # every metrics.json read once
    # a study without ground truth (data/ground_truth: false) plots its ground-truth-free metrics
    truth = ((study or {}).get("data") or {}).get("ground_truth", True)
    paired = collect_paired_differences(records, metrics=(("amplitude", "ssim"), ("phase", "ssim"))
                                        ) if truth else None
    grids.plot_delta_grid(csv, smk.output.delta_grid, overlap_targets=targets, paired=paired)
    rows = {} if truth else {"rows": grids.VS_DOSE_ROWS_GT_FREE}
    grids.plot_metric_vs_dose(csv, smk.output.metric_vs_dose, overlap_targets=targets,
                              references=collect_references(records),
                              limits=collect_frc_limits(records), **rows)
    grids.plot_frc_curves(records, smk.output.frc, key="frc" if truth else "frc_halves")
    grids.plot_loss_curves(list(smk.input.histories), list(smk.params.history_labels),
                           smk.output.losses)


run_job(snakemake, main)  # noqa: F821
