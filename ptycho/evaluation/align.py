"""Alignment of a reconstruction to the ground truth, identical for every arm.

shared/DESIGN.md, "Evaluation": (a) sub-pixel registration against the ground truth, (b) one optimal
global complex scale (least squares: removes the global phase offset and the amplitude scale),
(c) removal of a phase ramp (plane). Nothing else: no amplitude mean-rescaling, no per-arm options.
An all-zero reconstruction keeps scale 1 and no shift or ramp, so it is scored as zeros (the worst).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from ptycho.errors import PtychoError
from ptycho.evaluation.region import bounding_box, soft_window

MAX_SHIFT_PX = 8.0
"""Largest registration shift (pixels, per axis) applied; larger estimates are clipped to it.
Every arm reconstructs on the known scan positions, so a genuine offset is a few pixels at most;
a larger estimate means the reconstruction has no registrable structure (e.g. noise)."""

REGISTRATION_PASSES = 3
"""Registration is repeated on the shifted reconstruction (at most this many passes in all) so
the bias of the fixed region window towards zero shift is iterated away."""


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`align_to_truth`.

    aligned : (H, W) complex128 reconstruction after all three steps:
              ``aligned = scale * exp(-i * ramp(y, x)) * shifted(recon)``.
    shift   : (dy, dx) pixels applied to the reconstruction (Fourier shift) to register it to the
              truth; a reconstruction displaced by +d relative to the truth gets shift -d.
    scale   : complex global scale (|scale| amplitude factor, angle(scale) radians).
    ramp    : (offset rad, gy rad/px, gx rad/px): the plane ``offset + gy*y + gx*x`` (y, x object
              pixel indices) removed from the reconstruction's phase.
    shift_capped : True when the registration estimate exceeded ``max_shift`` and was clipped.
    """

    aligned: np.ndarray
    shift: tuple[float, float]
    scale: complex
    ramp: tuple[float, float, float]
    shift_capped: bool = False


def _fourier_shift(img: np.ndarray, shift: np.ndarray, pad: int) -> np.ndarray:
    """Sub-pixel shift of a complex image by Fourier interpolation; the image is reflect-padded by
    ``pad`` pixels first so that its periodic extension has no jump at the borders."""
    if not np.any(shift):
        return img.copy()
    p = ((pad, pad), (pad, pad))
    big = np.pad(img, p, mode="reflect") if min(img.shape) > pad else np.pad(img, p, mode="edge")
    out = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(big), shift))
    return out[pad : pad + img.shape[0], pad : pad + img.shape[1]]


def _register(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, window: np.ndarray,
              box: tuple[slice, slice], upsample: int) -> np.ndarray:
    """One phase-correlation estimate of the shift (dy, dx) that registers ``recon`` to ``truth``,
    on the region's bounding box, out-of-region pixels set to 0 (the region mean is subtracted and
    the region's soft window applied, so the region's own edge does not pull the estimate to 0)."""
    m = mask[box]
    t, r = truth[box], recon[box]
    if not np.any(r[m]):
        return np.zeros(2)
    a = (t - t[m].mean()) * window
    b = (r - r[m].mean()) * window
    with np.errstate(all="ignore"):
        s, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample)
    s = np.asarray(s, dtype=np.float64)
    return s if np.all(np.isfinite(s)) else np.zeros(2)


def _ls_scale(r: np.ndarray, t: np.ndarray) -> complex:
    """Least-squares complex scale ``sum conj(r) t / sum |r|^2``; 1 when r is all zero."""
    den = float(np.sum(np.abs(r) ** 2))
    if den == 0.0:
        return 1.0 + 0.0j
    return complex(np.sum(np.conj(r) * t) / den)


def _phase_plane(z: np.ndarray, mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """Weighted least-squares plane fit of the wrapped phase of ``z`` over ``mask``.

    Returns (c, gy, gx, yc, xc) with ``angle(z) ~ c + gy (y - yc) + gx (x - xc)``. The gradient is
    first estimated from the circular mean of neighbour phase differences (robust to wrapping for
    ramps below pi rad/px), then refined by least squares on the unwrapped residual weighted by |z|.
    """
    yy, xx = np.nonzero(mask)
    yc, xc = float(yy.mean()), float(xx.mean())
    pair_y = mask[1:, :] & mask[:-1, :]
    pair_x = mask[:, 1:] & mask[:, :-1]
    sy = np.sum((z[1:, :] * np.conj(z[:-1, :]))[pair_y])
    sx = np.sum((z[:, 1:] * np.conj(z[:, :-1]))[pair_x])
    gy0 = float(np.angle(sy)) if sy != 0 else 0.0
    gx0 = float(np.angle(sx)) if sx != 0 else 0.0
    dy, dx = yy - yc, xx - xc
    zm = z[mask] * np.exp(-1j * (gy0 * dy + gx0 * dx))
    w = np.abs(zm)
    if not np.any(w > 0):
        return 0.0, 0.0, 0.0, yc, xc
    c0 = float(np.angle(np.sum(zm)))
    res = np.angle(zm * np.exp(-1j * c0))
    A = np.stack([np.ones_like(dy, dtype=np.float64), dy, dx], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], res * sw, rcond=None)
    if not np.all(np.isfinite(coef)):
        return 0.0, 0.0, 0.0, yc, xc
    return c0 + float(coef[0]), gy0 + float(coef[1]), gx0 + float(coef[2]), yc, xc


def align_to_truth(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, upsample: int = 20,
                   max_shift: float = MAX_SHIFT_PX) -> Alignment:
    """Align a complex reconstruction (H, W) to the complex ground truth (H, W) over ``mask``.

    (a) Registration: ``skimage.registration.phase_cross_correlation`` of the complex images on the
        region's bounding box (out-of-region pixels 0, region mean removed, the region's soft
        window applied), ``upsample`` (1/upsample pixel precision), repeated on the shifted image
        up to ``REGISTRATION_PASSES`` times; the total is clipped to ``max_shift`` pixels per axis
        and applied to the whole reconstruction with ``scipy.ndimage.fourier_shift``.
    (b) Global complex scale ``alpha = sum conj(r) t / sum |r|^2`` over the mask (alpha = 1 for an
        all-zero reconstruction).
    (c) Phase ramp: weighted (|t| |alpha r|) least-squares plane fit to the wrapped phase
        difference ``angle(t conj(alpha r))`` over the mask, removed from the reconstruction's
        phase; the global scale is then re-fitted once on the ramp-free image (so ``scale`` is the
        least-squares optimum of the final image) and recorded as one complex number.
    """
    r = np.asarray(recon, dtype=np.complex128)
    t = np.asarray(truth, dtype=np.complex128)
    mask = np.asarray(mask, dtype=bool)
    if r.ndim != 2 or r.shape != t.shape or mask.shape != t.shape:
        raise PtychoError(
            f"align_to_truth: reconstruction {r.shape}, truth {t.shape} and mask {mask.shape} "
            "must be equal 2-D shapes"
        )
    if not np.all(np.isfinite(r)):
        raise PtychoError("align_to_truth: the reconstruction contains NaN or inf")
    if not np.all(np.isfinite(t)):
        raise PtychoError("align_to_truth: the ground truth contains NaN or inf")
    box = bounding_box(mask)
    window = soft_window(mask[box])
    pad = int(np.ceil(max_shift)) + 8

    # (a) registration
    shift = np.zeros(2)
    shifted = r
    for _ in range(REGISTRATION_PASSES):
        step = _register(shifted, t, mask, window, box, upsample)
        if not np.any(step):
            break
        shift = shift + step
        shifted = _fourier_shift(r, np.clip(shift, -max_shift, max_shift), pad)
        if np.any(np.abs(shift) > max_shift):
            break
    capped = bool(np.any(np.abs(shift) > max_shift))
    shift = np.clip(shift, -max_shift, max_shift)
    rm, tm = shifted[mask], t[mask]

    # (b) global complex scale
    alpha = _ls_scale(rm, tm)

    # (c) phase ramp
    z = np.zeros_like(t)
    z[mask] = tm * np.conj(alpha * rm)
    c, gy, gx, yc, xc = _phase_plane(z, mask)
    yy, xx = np.mgrid[0 : t.shape[0], 0 : t.shape[1]]
    plane = c + gy * (yy - yc) + gx * (xx - xc)  # phase of t relative to alpha * r
    deramped = shifted * np.exp(1j * plane)
    beta = _ls_scale(deramped[mask], tm)
    scale = alpha * beta
    aligned = scale * deramped
    offset = -(c - gy * yc - gx * xc)
    return Alignment(
        aligned=aligned,
        shift=(float(shift[0]), float(shift[1])),
        scale=complex(scale),
        ramp=(float(offset), float(-gy), float(-gx)),
        shift_capped=capped,
    )
