"""Evaluation: region, registration and alignment, metrics (MAE, MSE, PSNR, SSIM, MS-SSIM, FRC,
normalised complex error). Pure NumPy / SciPy / scikit-image; conventions in docs/conventions.md."""

from ptycho.evaluation.align import Alignment, align_to_truth
from ptycho.evaluation.evaluate import evaluate_reconstruction
from ptycho.evaluation.frc import frc_curve, frc_resolution
from ptycho.evaluation.metrics import compute_metrics, metrics_and_curves, ms_ssim, ssim
from ptycho.evaluation.region import evaluation_region, illumination_map

__all__ = [
    "Alignment", "align_to_truth", "compute_metrics", "evaluate_reconstruction",
    "evaluation_region", "frc_curve", "frc_resolution", "illumination_map", "metrics_and_curves",
    "ms_ssim", "ssim",
]
