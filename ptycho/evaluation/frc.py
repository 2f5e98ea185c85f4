"""Fourier ring correlation between a reconstruction and the ground truth.

The FRC here compares an aligned reconstruction with the known truth (not two half data sets), and
the resolution is the period at the first crossing of a fixed threshold: 0.5 and 1/7.
"""

from __future__ import annotations

import numpy as np

from ptycho.errors import PtychoError
from ptycho.evaluation.region import bounding_box, tukey

FRC_THRESHOLDS = {"frc50_px": 0.5, "frc17_px": 1.0 / 7.0}
NYQUIST_PERIOD_PX = 2.0
TUKEY_ALPHA = 0.25


def frc_curve(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two real images of equal shape (H, W).

    Both images are cropped to the bounding box of ``mask`` (the whole image if None), their
    window-weighted mean is removed, and they are apodised with a separable Tukey window
    (alpha 0.25) over the box. Pixels of the box outside the region are kept: multiplying both
    images by the same region-shaped mask (e.g. the small discs of a sparse scan) would spread
    their common low-frequency content into high rings and inflate the FRC (measured: a
    sigma = 2 px blur read 2.8 px instead of 9.5 px). The crop is zero-padded to a square of side
    M = max(h, w), so rings have a width of one frequency sample, 1/M cycles/pixel.

    Returns ``(freq, frc)``, both (M//2,) float64: ring k = 1 .. M//2 at ``freq = k / M``
    cycles/pixel (the DC ring is left out; the last ring is Nyquist, 0.5 cycles/pixel), and
    ``frc_k = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2)`` over the ring, 0 where either
    image has no power in the ring (an empty image correlates with nothing).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise PtychoError(f"frc_curve: need two equal 2-D images, got {a.shape} and {b.shape}")
    m = np.ones(a.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != a.shape:
        raise PtychoError(f"frc_curve: mask {m.shape} does not match the images {a.shape}")
    box = bounding_box(m)
    a, b = a[box], b[box]
    h, w = a.shape
    if min(h, w) < 4:
        raise PtychoError(f"frc_curve: region bounding box {h} x {w} is too small (< 4 px)")
    win = np.outer(tukey(h, TUKEY_ALPHA), tukey(w, TUKEY_ALPHA))
    wsum = win.sum()
    M = max(h, w)
    fa = np.fft.fft2((a - np.sum(a * win) / wsum) * win, s=(M, M))
    fb = np.fft.fft2((b - np.sum(b * win) / wsum) * win, s=(M, M))
    ring = _ring_index(M)
    nr = M // 2 + 1
    num = np.bincount(ring, weights=np.real(fa * np.conj(fb)).ravel(), minlength=nr)[:nr]
    pa = np.bincount(ring, weights=(np.abs(fa) ** 2).ravel(), minlength=nr)[:nr]
    pb = np.bincount(ring, weights=(np.abs(fb) ** 2).ravel(), minlength=nr)[:nr]
    den = np.sqrt(pa * pb)
    frc = np.divide(num, den, out=np.zeros(nr), where=den > 0)
    freq = np.arange(nr) / M
    return freq[1:], np.clip(frc[1:], -1.0, 1.0)


def _ring_index(M: int) -> np.ndarray:
    """Ring of every sample of an M x M FFT (rounded radius in frequency samples), flattened."""
    k = np.fft.fftfreq(M) * M
    return np.rint(np.hypot(k[:, None], k[None, :])).astype(np.int64).ravel()


def frc_ring_samples(mask: np.ndarray) -> np.ndarray:
    """Independent real samples behind each ring of :func:`frc_curve` over ``mask``, (M//2,).

    A ring of c samples of the M x M transform holds c real values (c/2 complex values: a real
    image's transform is Hermitian); the h x w crop zero-padded to M x M carries only h w / M^2 of
    them independently. (The Tukey apodisation correlates neighbouring samples further; it is
    not counted, so these are upper bounds.)"""
    h, w = (s.stop - s.start for s in bounding_box(np.asarray(mask, dtype=bool)))
    M = max(h, w)
    counts = np.bincount(_ring_index(M), minlength=M // 2 + 1)[1 : M // 2 + 1]
    return counts * (h * w) / float(M * M)


def frc_resolution_interval(freq: np.ndarray, curve: np.ndarray, threshold: float,
                            samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Interval (px) of :func:`frc_resolution` from the sampling error of the ring correlations.

    Each ring's correlation r with n independent real samples (:func:`frc_ring_samples`) gets the
    Fisher interval ``tanh(atanh(r) +- z / sqrt(n - 3))`` (z the normal quantile of
    ``confidence``; n - 3 floored at 1). The low end is the first crossing of the upper curve (at
    or beyond the estimate's crossing); the high end is the crossing of the lower curve nearest
    to the estimate's, at or below its frequency (the lowest rings hold a handful of samples, so
    a first-crossing rule on the lower curve would jump to the largest period whenever one of
    them is uncertain). The interval contains ``frc_resolution(freq, curve, threshold)``.
    An approximation: it treats the rings as independent and the truth as noise-free."""
    from scipy.stats import norm

    curve = np.asarray(curve, dtype=np.float64)
    n = np.asarray(samples, dtype=np.float64)
    if n.shape != curve.shape:
        raise PtychoError(f"frc_resolution_interval: {n.shape} ring sample counts for a curve of "
                          f"{curve.shape}")
    z = float(norm.ppf(0.5 + confidence / 2))
    fz = np.arctanh(np.clip(curve, -0.999999, 0.999999))
    se = 1.0 / np.sqrt(np.maximum(n - 3.0, 1.0))
    upper, lower = np.tanh(fz + z * se), np.tanh(fz - z * se)
    freq = np.asarray(freq, dtype=np.float64)
    below = np.flatnonzero(curve < threshold)
    j = (int(below[0]) if below.size else len(curve)) - 1
    while j >= 0 and lower[j] < threshold:
        j -= 1
    if j < 0:
        high = float(1.0 / freq[0])
    elif j == len(curve) - 1:
        high = NYQUIST_PERIOD_PX
    else:
        high = _crossing_period(freq, lower, j + 1, threshold)
    return frc_resolution(freq, upper, threshold), high


def _crossing_period(freq: np.ndarray, curve: np.ndarray, i: int, threshold: float) -> float:
    """Period (px) where ``curve`` falls through ``threshold`` between rings i - 1 and i
    (``curve[i - 1] >= threshold > curve[i]``), linearly interpolated, at most 1 / freq[0]."""
    f0, f1, c0, c1 = freq[i - 1], freq[i], curve[i - 1], curve[i]
    f = f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1)
    return float(min(1.0 / f, 1.0 / freq[0]))


def frc_resolution(freq: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """Resolution (pixels) = 1 / f at the first crossing of ``curve`` below ``threshold``.

    The crossing frequency is linearly interpolated between the last ring at or above the threshold
    and the first ring below it. A curve below the threshold at its first ring gives ``1 / freq[0]``
    (the largest period measured, the worst); a curve that never crosses gives 2.0 px (Nyquist).
    """
    freq = np.asarray(freq, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    if freq.ndim != 1 or freq.shape != curve.shape or freq.size == 0:
        raise PtychoError(f"frc_resolution: freq {freq.shape} and curve {curve.shape} must be "
                          "equal non-empty 1-D arrays")
    if not (np.all(np.isfinite(freq)) and np.all(np.isfinite(curve))) or np.any(freq <= 0):
        raise PtychoError("frc_resolution: freq must be positive and finite and the curve finite")
    below = np.flatnonzero(curve < threshold)
    if below.size == 0:
        return NYQUIST_PERIOD_PX
    i = int(below[0])
    if i == 0:
        return float(1.0 / freq[0])
    return _crossing_period(freq, curve, i, threshold)
