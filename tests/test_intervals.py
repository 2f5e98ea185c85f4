"""Confidence intervals: the spatial block bootstrap, FRC intervals, paired differences between
arms and the dose-resolution power-law fit, on synthetic images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptycho.errors import PtychoError
from ptycho.evaluation.intervals import (
    block_sums,
    bootstrap_distribution,
    bootstrap_stream,
    metric_intervals,
    paired_difference_interval,
    percentile_interval,
    resample_indices,
    statistics,
    sums_total,
)
from ptycho.evaluation.metrics import metrics_and_curves
from ptycho.reporting.dose_resolution import fit_power_law

SHAPE = (96, 96)


def _truth() -> np.ndarray:
    rng = np.random.default_rng(1)
    smooth = ndimage.gaussian_filter(rng.random(SHAPE), 2)
    amp = 0.4 + 0.5 * (smooth - smooth.min()) / np.ptp(smooth)
    phase = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 3) * 4
    return amp * np.exp(1j * phase)


def _region() -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[8:88, 8:88] = True
    return m


def _noise(rng, sigma: float) -> np.ndarray:
    """Spatially correlated Gaussian noise of variance exactly sigma^2: the 3 x 3 box mean of
    white noise (variance sigma^2 / 9), times 3."""
    return 3.0 * ndimage.uniform_filter(rng.normal(0.0, sigma, SHAPE), 3, mode="wrap")


def _recon(truth, rng, sigma_amp=0.05, sigma_phase=0.05):
    return (np.abs(truth) + _noise(rng, sigma_amp)) * np.exp(1j * (np.angle(truth)
                                                                 + _noise(rng, sigma_phase)))


def test_block_bootstrap_covers_the_true_error_at_the_nominal_rate():
    """MSE and MAE of a reconstruction with known-variance correlated noise: the 95% interval
    covers the true value (sigma^2, sigma sqrt(2 / pi)) in about 95 of 100 seeded trials."""
    truth, mask, sigma = _truth(), _region(), 0.05
    data_range = {"amplitude": 1.0, "phase": 1.0}
    true = {"mse": sigma**2, "mae": sigma * np.sqrt(2 / np.pi)}
    hits = {"mse": 0, "mae": 0}
    widths = []
    for trial in range(100):
        rng = np.random.default_rng(1000 + trial)
        sums = block_sums(_recon(truth, rng, sigma), truth, mask, 8, data_range)
        assert len(sums["pixels"]) == 100  # an 80 x 80 region in blocks of 8 px
        idx = resample_indices(100, 1000, np.random.default_rng(trial))
        dist = bootstrap_distribution(sums, data_range, idx)["amplitude"]
        for k in hits:
            lo, hi = percentile_interval(dist[k], 0.95)
            hits[k] += lo <= true[k] <= hi
        widths.append(np.subtract(*percentile_interval(dist["mse"], 0.95)[::-1]))
    assert 90 <= hits["mse"] <= 99 and 90 <= hits["mae"] <= 99, hits
    # the interval is informative: a few percent of the value, not the whole range
    assert np.median(widths) < 0.2 * sigma**2


def test_all_blocks_once_give_the_metrics_and_intervals_hold_them():
    truth, mask = _truth(), _region()
    rec = _recon(truth, np.random.default_rng(3))
    metrics, curves = metrics_and_curves(rec, truth, mask)
    stream = bootstrap_stream("1e4", "dense")
    ci, record = metric_intervals(rec, truth, mask, metrics, curves, 9.6, 13, stream)
    assert record["block_px"] == 10 and record["resamples"] == 1000 and record["seed"] == 13
    assert record["stream"] == ["bootstrap", "1e4", "dense"]
    sums = {k: np.asarray(v) for k, v in record["blocks"].items()}
    assert sums["pixels"].sum() == mask.sum()
    point = statistics(sums_total(sums), record["data_range"])
    for q in ("amplitude", "phase"):
        for k in ("ssim", "ms_ssim", "mae", "mse", "psnr"):
            assert point[q][k] == pytest.approx(metrics[q][k], rel=1e-9, abs=1e-12), (q, k)
        for k in ("ssim", "ms_ssim", "mae", "mse", "psnr", "frc50_px", "frc17_px"):
            lo, hi = ci[q][k]
            assert np.isfinite(lo) and np.isfinite(hi) and lo <= metrics[q][k] <= hi, (q, k)
        assert ci[q]["ssim"][1] - ci[q]["ssim"][0] < 0.1
    assert point["complex"]["nce"] == pytest.approx(metrics["complex"]["nce"], rel=1e-9)
    assert ci["complex"]["nce"][0] <= metrics["complex"]["nce"] <= ci["complex"]["nce"][1]
    # the same inputs give the same intervals bit for bit
    again, record2 = metric_intervals(rec, truth, mask, metrics, curves, 9.6, 13, stream)
    assert again == ci and record2 == record
    # another cell replicate draws other blocks
    other, _ = metric_intervals(rec, truth, mask, metrics, curves, 9.6, 13,
                                bootstrap_stream("1e4", "dense", ("replicate", "1")))
    assert other["amplitude"]["ssim"] != ci["amplitude"]["ssim"]


def test_paired_difference_between_arms_uses_the_same_blocks():
    truth, mask = _truth(), _region()
    stream = bootstrap_stream("1e3", "sparse")
    records = {}
    for name, sigma in (("good", 0.03), ("close", 0.031), ("bad", 0.08)):
        rec = _recon(truth, np.random.default_rng(7), sigma, sigma)  # same noise pattern, scaled
        m, c = metrics_and_curves(rec, truth, mask)
        records[name] = (m, metric_intervals(rec, truth, mask, m, c, 8.0, 13, stream)[1])
    (mg, rg), (_, rc), (mb, rb) = records["good"], records["close"], records["bad"]
    diff, (lo, hi) = paired_difference_interval(rg, rg, "amplitude", "ssim")
    assert diff == 0.0 and lo == hi == 0.0
    diff, (lo, hi) = paired_difference_interval(rg, rb, "amplitude", "ssim")
    assert diff == pytest.approx(mg["amplitude"]["ssim"] - mb["amplitude"]["ssim"], rel=1e-9)
    assert 0 < lo <= diff <= hi  # the better arm is significantly better
    # nearly equal arms: the paired interval is far narrower than either arm's own interval
    diff, (lo, hi) = paired_difference_interval(rg, rc, "amplitude", "mse")
    own = percentile_interval(bootstrap_distribution(
        {k: np.asarray(v) for k, v in rg["blocks"].items()}, rg["data_range"],
        resample_indices(rg["n_blocks"], 1000, np.random.default_rng(0)))["amplitude"]["mse"],
        0.95)
    assert lo <= diff <= hi and (hi - lo) < 0.2 * (own[1] - own[0])
    with pytest.raises(PtychoError, match="stream"):
        paired_difference_interval(rg, dict(rb, stream=["bootstrap", "1e5", "sparse"]),
                                   "amplitude", "ssim")


def test_power_law_fit_recovers_a_known_exponent():
    """d = 40 F^(-1/4) with 10% log-normal scatter at 3 replicates of 5 fluences: the fitted
    exponent's 95% interval holds -1/4 in about 95 of 100 seeded trials."""
    F = np.repeat(np.geomspace(1e2, 1e6, 5), 3)
    hits = 0
    for trial in range(100):
        rng = np.random.default_rng(trial)
        d = 40.0 * F**-0.25 * np.exp(rng.normal(0, 0.1, F.size))
        fit = fit_power_law(F, d)
        hits += fit["low"] <= -0.25 <= fit["high"]
        assert fit["n"] == 15
    assert 90 <= hits <= 99
    exact = fit_power_law(F, 40.0 * F**-0.25)
    assert exact["exponent"] == pytest.approx(-0.25) and exact["prefactor"] == pytest.approx(40)
    assert exact["r2"] == pytest.approx(1.0)
    two = fit_power_law([10.0, 1000.0], [4.0, 2.0])
    assert two["exponent"] == pytest.approx(np.log10(0.5) / 2) and np.isnan(two["low"])
    with pytest.raises(PtychoError, match="distinct"):
        fit_power_law([10.0, 10.0], [1.0, 2.0])
    with pytest.raises(PtychoError, match="positive"):
        fit_power_law([10.0, 100.0], [1.0, 0.0])
