"""Confidence intervals of one reconstruction's metrics: a spatial block bootstrap.

The evaluation region is tiled into square blocks of ``block_px`` pixels (by default one probe
diameter, so that neighbouring blocks hold mostly different exposures), starting at the region's
bounding-box corner. Every metric that is a region mean, or a smooth function of region means, is
rebuilt from per-block sums:

- SSIM: the SSIM map summed over each block's region pixels; MAE and MSE: |error| and error^2;
  PSNR through MSE (``10 log10(R^2 / MSE)`` with the data range R held at its full-region value);
- NCE: ``sqrt(sum |a - t|^2 / sum |t|^2)``, both sums per block;
- MS-SSIM: each of its five scales is a region mean (a coarse pixel weighted by its fraction
  inside the region is the same as every region pixel carrying the value of the coarse pixel it
  lies in), combined with the standard weights. Its coarse scales use windows wider than a block,
  so neighbouring blocks are not independent there and this interval is narrower than the truth
  (a lower bound).

A resample draws as many blocks as there are, with replacement, and adds their sums; the interval
is the percentile interval of the resampled statistic (``confidence``, e.g. 95%). The draws come
from a seeded stream that names the cell and replicate but not the arm, so every arm of a cell is
resampled with the same blocks, which makes differences between arms paired
(:func:`paired_difference_interval`).

FRC resolutions are global Fourier statistics of the whole region: resampling blocks would break
the rings they measure, so they get an analytic interval from the sampling error of the ring
correlations instead (:func:`ptycho.evaluation.frc.frc_resolution_interval`).
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.errors import PtychoError
from ptycho.evaluation.frc import FRC_THRESHOLDS, frc_resolution_interval, frc_ring_samples
from ptycho.evaluation.metrics import MS_SSIM_WEIGHTS, ms_ssim_maps, psnr_from_mse, ssim_map
from ptycho.evaluation.region import bounding_box
from ptycho.rng import rng_for

QUANTITIES = ("amplitude", "phase")
BOOTSTRAP_METRICS = ("ssim", "ms_ssim", "mae", "mse", "psnr")
METHOD = "spatial block bootstrap (square blocks of the evaluation region, percentile interval)"
INTERVAL_METHODS = {
    "ssim": "block bootstrap of the region mean of the SSIM map",
    "mae": "block bootstrap of the region mean",
    "mse": "block bootstrap of the region mean",
    "psnr": "block bootstrap of the MSE, data range held fixed",
    "ms_ssim": "block bootstrap of each scale's region mean (narrow: coarse windows span blocks)",
    "nce": "block bootstrap of the region sums |a - t|^2 and |t|^2",
    "frc50_px": "Fisher z interval of the ring correlations (sampling error of the FRC curve)",
    "frc17_px": "Fisher z interval of the ring correlations (sampling error of the FRC curve)",
}


def block_size(probe_diameter_px: float, block_px: int | None = None) -> int:
    """Block side (px): ``block_px`` when given, else the probe diameter rounded (at least 2)."""
    b = round(float(probe_diameter_px)) if block_px is None else int(block_px)
    if not b >= 2:
        raise PtychoError(f"bootstrap block size must be >= 2 px, got {b}")
    return max(2, b)


def _block_ids(rows: np.ndarray, cols: np.ndarray, origin, block: int, grid) -> np.ndarray:
    """Block index of pixels (absolute row/column coordinates, clipped into the block grid)."""
    by = np.clip(np.floor((rows - origin[0]) / block).astype(np.int64), 0, grid[0] - 1)
    bx = np.clip(np.floor((cols - origin[1]) / block).astype(np.int64), 0, grid[1] - 1)
    return by * grid[1] + bx


def block_sums(aligned: np.ndarray, truth: np.ndarray, mask: np.ndarray, block: int,
               data_range: dict) -> dict:
    """Per-block sums of every quantity the bootstrap needs, over the region ``mask``.

    ``data_range``: the PSNR / SSIM data range of each component (``psnr_data_range`` of the
    metrics). Returns ``{"pixels": (n,), "<quantity>.<term>": (n,), ...}`` for the n blocks that
    hold region pixels: ``ssim``, ``abs``, ``sq`` and ``ms0``..``ms4`` (each region pixel's
    value of that MS-SSIM scale) with ``msw0``..``msw4`` (the pixels counted at that scale: a
    scale drops an odd last row or column) per component, ``complex.err2`` and ``complex.ref2``.
    Summed over all blocks they give the metrics of :func:`ptycho.evaluation.compute_metrics`."""
    a = np.asarray(aligned, dtype=np.complex128)
    t = np.asarray(truth, dtype=np.complex128)
    m = np.asarray(mask, dtype=bool)
    box = bounding_box(m)
    origin = (box[0].start, box[1].start)
    grid = (math.ceil((box[0].stop - box[0].start) / block),
            math.ceil((box[1].stop - box[1].start) / block))
    nb = grid[0] * grid[1]
    rr, cc = np.nonzero(m)
    ids = _block_ids(rr, cc, origin, block, grid)

    def add(values, weights=None, where_ids=ids):
        return np.bincount(where_ids, weights=values if weights is None else values * weights,
                           minlength=nb)

    sums = {"pixels": add(np.ones(len(rr)))}
    for q, f in (("amplitude", np.abs), ("phase", np.angle)):
        x, y = f(a), f(t)
        err = (x - y)[m]
        smap, sbox = ssim_map(x, y, data_range[q], m)
        sums[f"{q}.ssim"] = add(smap[rr - sbox[0].start, cc - sbox[1].start])
        sums[f"{q}.abs"] = add(np.abs(err))
        sums[f"{q}.sq"] = add(err**2)
        for j, (values, _, mbox) in enumerate(ms_ssim_maps(x, y, data_range[q], m)):
            u, v = (rr - mbox[0].start) >> j, (cc - mbox[1].start) >> j
            keep = (u < values.shape[0]) & (v < values.shape[1])
            sums[f"{q}.ms{j}"] = add(np.where(keep, values[np.minimum(u, values.shape[0] - 1),
                                                           np.minimum(v, values.shape[1] - 1)], 0.0))
            sums[f"{q}.msw{j}"] = add(keep.astype(np.float64))
    d = (a - t)[m]
    sums["complex.err2"] = add(np.abs(d) ** 2)
    sums["complex.ref2"] = add(np.abs(t[m]) ** 2)
    keep = sums["pixels"] > 0
    return {k: v[keep] for k, v in sums.items()}


def statistics(totals: dict, data_range: dict) -> dict:
    """Metrics from summed block terms (numbers, or arrays over resamples):
    ``{"amplitude": {ssim, ms_ssim, mae, mse, psnr}, "phase": {...}, "complex": {"nce"}}``."""
    n = np.asarray(totals["pixels"], dtype=np.float64)
    out = {}
    for q in QUANTITIES:
        mse = totals[f"{q}.sq"] / n
        ms = 1.0
        for j, w in enumerate(MS_SSIM_WEIGHTS):
            ms = ms * np.maximum(totals[f"{q}.ms{j}"] / totals[f"{q}.msw{j}"], 0.0) ** w
        out[q] = {"ssim": totals[f"{q}.ssim"] / n, "ms_ssim": ms, "mae": totals[f"{q}.abs"] / n,
                  "mse": mse, "psnr": psnr_from_mse(mse, data_range[q])}
    out["complex"] = {"nce": np.sqrt(totals["complex.err2"] / totals["complex.ref2"])}
    return out


def resample_indices(n_blocks: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_blocks) block indices drawn with replacement."""
    if n_blocks < 2:
        raise PtychoError(f"bootstrap: the evaluation region holds {n_blocks} block(s); need >= 2 "
                          "(choose a smaller intervals/block_px)")
    return rng.integers(0, n_blocks, size=(int(resamples), int(n_blocks)))


def bootstrap_distribution(sums: dict, data_range: dict, indices: np.ndarray) -> dict:
    """The resampled metrics, ``statistics`` of the block sums drawn by ``indices``."""
    totals = {k: np.asarray(v, dtype=np.float64)[indices].sum(axis=1) for k, v in sums.items()}
    return statistics(totals, data_range)


def percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    """[low, high] percentile interval of a bootstrap distribution. Resamples whose statistic is
    undefined (NaN: no pixel of a coarse MS-SSIM scale drawn) are left out; ``PtychoError`` when
    more than 1% are."""
    alpha = 1.0 - float(confidence)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    if ok.sum() < 0.99 * v.size:
        raise PtychoError(f"bootstrap: {v.size - int(ok.sum())} of {v.size} resamples have an "
                          "undefined statistic; the evaluation region is too small for its blocks")
    lo, hi = np.quantile(v[ok], [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def bootstrap_stream(dose_lbl: str, view: str, replicate_labels: tuple = ()) -> list[str]:
    """Labels of a cell replicate's resampling stream (no arm: all arms draw the same blocks)."""
    return ["bootstrap", str(dose_lbl), str(view), *replicate_labels]


def metric_intervals(aligned, truth, mask, metrics: dict, curves: dict, probe_diameter: float,
                     seed: int, stream: list[str], confidence: float = 0.95,
                     resamples: int = 1000, block_px: int | None = None) -> tuple[dict, dict]:
    """Intervals of every metric of ``metrics`` (``compute_metrics`` of the same images) and the
    bootstrap record for ``metrics.json``.

    Returns ``(intervals, record)``: ``intervals[quantity][metric] = [low, high]`` for SSIM,
    MS-SSIM, MAE, MSE, PSNR, FRC 0.5 and 1/7 (amplitude and phase) and NCE; ``record`` holds the
    method, block size, number of blocks, resamples, confidence, seed and stream labels (with
    ``ptycho.rng.rng_for(seed, *stream)`` the resampling is drawn again), the data ranges and the
    per-block sums (``blocks``), from which the report draws paired differences between arms."""
    block = block_size(probe_diameter, block_px)
    data_range = {q: float(metrics[q]["psnr_data_range"]) for q in QUANTITIES}
    sums = block_sums(aligned, truth, mask, block, data_range)
    idx = resample_indices(len(sums["pixels"]), resamples, rng_for(seed, *stream))
    dist = bootstrap_distribution(sums, data_range, idx)
    intervals = {q: {k: percentile_interval(v, confidence) for k, v in dist[q].items()}
                 for q in dist}
    samples = frc_ring_samples(mask)
    for q in QUANTITIES:
        freq, curve = np.asarray(curves[q]["freq"]), np.asarray(curves[q]["frc"])
        for key, thr in FRC_THRESHOLDS.items():
            intervals[q][key] = list(frc_resolution_interval(freq, curve, thr, samples, confidence))
    record = {
        "method": METHOD,
        "block_px": block,
        "n_blocks": len(sums["pixels"]),
        "resamples": int(resamples),
        "confidence": float(confidence),
        "seed": int(seed),
        "stream": list(stream),
        "data_range": data_range,
        "interval_methods": INTERVAL_METHODS,
        "blocks": {k: v.tolist() for k, v in sums.items()},
    }
    return intervals, record


def _record_indices(record: dict) -> np.ndarray:
    return resample_indices(int(record["n_blocks"]), int(record["resamples"]),
                            rng_for(int(record["seed"]), *record["stream"]))


def paired_difference_interval(record_a: dict, record_b: dict, quantity: str, metric: str
                               ) -> tuple[float, list[float]]:
    """Difference ``a - b`` of one bootstrap metric of two arms of the same cell replicate (their
    ``bootstrap`` records) and its paired percentile interval: both arms are resampled with the
    same blocks. Raises ``PtychoError`` when the records do not share blocks and draws."""
    keys = ("block_px", "n_blocks", "resamples", "seed", "stream", "confidence")
    for k in keys:
        if record_a.get(k) != record_b.get(k):
            raise PtychoError(f"paired bootstrap: the two arms differ in '{k}' ({record_a.get(k)!r} "
                              f"vs {record_b.get(k)!r}); they are not the same cell replicate")
    if record_a["blocks"]["pixels"] != record_b["blocks"]["pixels"]:
        raise PtychoError("paired bootstrap: the two arms were scored on different regions")
    idx = _record_indices(record_a)
    dists, points = [], []
    for r in (record_a, record_b):
        sums = {k: np.asarray(v, dtype=np.float64) for k, v in r["blocks"].items()}
        dists.append(bootstrap_distribution(sums, r["data_range"], idx)[quantity][metric])
        points.append(float(statistics(sums_total(sums), r["data_range"])[quantity][metric]))
    diff = points[0] - points[1]
    return diff, percentile_interval(dists[0] - dists[1], float(record_a["confidence"]))


def sums_total(sums: dict) -> dict:
    """Every block once: the totals whose ``statistics`` are the full-region metrics."""
    return {k: float(np.sum(v)) for k, v in sums.items()}


__all__ = [
    "BOOTSTRAP_METRICS",
    "INTERVAL_METHODS",
    "block_size",
    "block_sums",
    "bootstrap_distribution",
    "bootstrap_stream",
    "metric_intervals",
    "paired_difference_interval",
    "percentile_interval",
    "resample_indices",
    "statistics",
    "sums_total",
]
