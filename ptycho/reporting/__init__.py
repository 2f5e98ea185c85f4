"""Reporting: tidy metric tables, figures, the artifact inventory, provenance and the verification
report of a study.

Modules (each imports matplotlib only inside its plotting functions, with the Agg backend, and
never imports TensorFlow or PyTorch), in the order they build on each other -- records ->
statistics -> sections -> summary / figures / verification:

- ``records``: ``load_records`` (every ``metrics.json`` of a job read once, as
  ``ptycho.evaluation.record.MetricsRecord``), ``collect_metrics`` / ``write_metrics_csv`` /
  ``read_metrics_csv`` (the tidy ``metrics.csv``), ``collect_references``, ``collect_timing``,
  ``read_history``
- ``uncertainty``: replicate means and intervals, paired differences, fluence, and their sections
- ``dose_resolution``: the dose-resolution fits, their section and figures
- ``tables``: the Markdown summary (``write_summary_md``, ``collect_uncertainty``)
- ``grids``: SSIM / MS-SSIM grids, PINN-minus-other delta grids, metric-versus-dose lines, FRC and
  training-loss curves
- ``frontier``: quality against wall time (solver snapshots, network points), the matched-quality
  and iterations-saved table (``quality_time.csv``) and its figure
- ``comparison``: one cell's ground truth, reconstructions and error maps side by side
- ``dataset_figure``: the summary figure of one simulated dataset pair
- ``inventory``: ``build_inventory`` / ``write_inventory`` / ``read_inventory`` / ``check_inventory``
- ``provenance``: ``build_provenance`` (config, versions, git commit, benchmark wall times and memory)
- ``verify``: ``verify_study`` and ``assert_verified``

Every file is written atomically (``ptycho.data.io.atomic_path``).
"""

QUANTITIES = ("amplitude", "phase")
# Metrics every arm must report for amplitude and phase, and for the complex field.
REQUIRED_METRICS = {
    "amplitude": ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50_px", "frc17_px", "psnr_data_range"),
    "phase": ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50_px", "frc17_px", "psnr_data_range"),
    "complex": ("nce",),
}
# Metrics every arm reports in a study without ground truth (external data, data/ground_truth
# false): the data residual and the FRC between reconstructions of two interleaved half scans.
REQUIRED_METRICS_GT_FREE = {
    "amplitude": ("frc50_px_halves", "frc17_px_halves"),
    "phase": ("frc50_px_halves", "frc17_px_halves"),
    "data": ("poisson_deviance",),
}


def required_metrics(ground_truth: bool = True) -> dict:
    """The metrics every arm of a study must report: ``REQUIRED_METRICS`` with ground truth,
    ``REQUIRED_METRICS_GT_FREE`` without."""
    return REQUIRED_METRICS if ground_truth else REQUIRED_METRICS_GT_FREE


def arm_sort_key(arm: str) -> tuple:
    """Canonical arm order: PINN by gridsize, adapted PINN, baseline, iterative, hybrid, any
    other."""
    from ptycho.arms.spec import ArmIdentity

    ident = ArmIdentity.try_parse(arm)
    if ident is None:  # a variant
        return (4, 0, arm)
    rank = {"pinn": (0, ident.gridsize), "adapted": (1, ident.gridsize), "baseline": (2, 0),
            "iterative": (3, 0), "hybrid": (3, 1)}[ident.kind]
    return (*rank, arm)
