"""Alignment of a reconstruction to the ground truth, identical for every arm.

docs/conventions.md, "Evaluation": (a) sub-pixel registration against the ground truth, (b) one
optimal global complex scale (least squares: removes the global phase offset and the amplitude
scale), (c) removal of a phase ramp (plane). Nothing else: no amplitude mean-rescaling, no per-arm options.
An all-zero reconstruction keeps scale 1 and no shift or ramp, so it is scored as zeros (the worst).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from ptycho.errors import PtychoError
from ptycho.evaluation.region import bounding_box, tukey

MAX_SHIFT_PX = 8.0
"""Largest registration shift (pixels, per axis) applied; larger estimates are clipped to it.
Every arm reconstructs on the known scan positions, so a genuine offset is a few pixels at most;
a larger estimate means the reconstruction has no registrable structure (e.g. noise)."""

REGISTRATION_PASSES = 5
"""Registration is repeated on the shifted reconstruction (at most this many passes in all, and
until a pass adds no shift) so the bias of the fixed window towards zero shift is iterated away."""


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
    """Sub-pixel shift of a complex image by Fourier interpolation. The image is reflect-padded by
    ``pad`` pixels first, so the jump of its periodic extension (and the ringing it causes) lies
    ``pad`` pixels outside the image instead of on its border."""
    if not np.any(shift):
        return img.copy()
    p = ((pad, pad), (pad, pad))
    big = np.pad(img, p, mode="reflect") if min(img.shape) > pad else np.pad(img, p, mode="edge")
    out = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(big), shift))
    return out[pad : pad + img.shape[0], pad : pad + img.shape[1]]


def registration_window(mask: np.ndarray, illumination: np.ndarray | None = None) -> np.ndarray:
    """Registration weight on the region's bounding box, float64 (h, w) in [0, 1].

    A Tukey window (alpha 0.25) over the bounding box of ``mask``, times
    ``sqrt(min(illumination, 1))`` when ``illumination`` (H, W), the summed probe intensity in
    units of the probe's peak intensity, is given: pixels count by how much light they received.
    Pixels of the box outside the region are not set to zero: with sparse scans the region is a
    set of small discs, and a hard region mask (the same in both images) dominates the correlation
    and pulls the estimate towards zero shift (measured: a (3, 2) px shift came out as (0, 0)).
    """
    box = bounding_box(mask)
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    win = np.outer(tukey(h, 0.25), tukey(w, 0.25))
    if illumination is not None:
        ill = np.asarray(illumination, dtype=np.float64)
        if ill.shape != mask.shape:
            raise PtychoError(f"illumination {ill.shape} does not match the mask {mask.shape}")
        win = win * np.sqrt(np.clip(ill[box], 0.0, 1.0))
    return win


def _register(recon: np.ndarray, truth: np.ndarray, window: np.ndarray,
              box: tuple[slice, slice], upsample: int) -> np.ndarray:
    """One estimate of the shift (dy, dx) that registers ``recon`` to ``truth`` on the bounding box
    ``box``: the window-weighted mean is removed and the window applied, then the upsampled
    cross-correlation peak is located (``normalization=None``: no spectral whitening, which would
    weight frequencies where the object has no power as much as the rest and let the window that
    both images share pull the estimate to zero; measured on a smooth object, 1.3 px read 0.95)."""
    t, r = truth[box], recon[box]
    wsum = float(window.sum())
    if wsum == 0.0:
        return np.zeros(2)
    a = (t - np.sum(t * window) / wsum) * window
    b = (r - np.sum(r * window) / wsum) * window
    scale = float(np.linalg.norm(r * window))
    if scale == 0.0 or float(np.linalg.norm(b)) <= 1e-9 * scale:
        return np.zeros(2)  # no structure to register (all zero or constant)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    s = np.asarray(s, dtype=np.float64)
    return s if np.all(np.isfinite(s)) else np.zeros(2)


def _iterate_registration(r: np.ndarray, t: np.ndarray, window: np.ndarray,
                          box: tuple[slice, slice], upsample: int, max_shift: float, pad: int
                          ) -> tuple[np.ndarray, bool, np.ndarray]:
    """Repeat :func:`_register` on the shifted image (at most ``REGISTRATION_PASSES`` passes, until
    a pass adds nothing); returns (shift clipped to +-max_shift, capped?, shifted image)."""
    shift = np.zeros(2)
    for _ in range(REGISTRATION_PASSES):
        moved = r if not np.any(shift) else _fourier_shift(r, shift, pad)
        step = _register(moved, t, window, box, upsample)
        if not np.any(step):
            break
        shift = shift + step
        if np.any(np.abs(shift) > max_shift):
            break
    capped = bool(np.any(np.abs(shift) > max_shift))
    shift = np.clip(shift, -max_shift, max_shift)
    return shift, capped, (r if not np.any(shift) else _fourier_shift(r, shift, pad))


def _ls_scale(r: np.ndarray, t: np.ndarray) -> complex:
    """Least-squares complex scale ``sum conj(r) t / sum |r|^2``; 1 when r is all zero."""
    den = float(np.sum(np.abs(r) ** 2))
    if den == 0.0:
        return 1.0 + 0.0j
    return complex(np.sum(np.conj(r) * t) / den)


def _neighbour_gradient(z: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Phase gradient (gy, gx) rad/px of ``z`` over ``mask`` from the circular mean of neighbour
    phase differences, ``angle(sum z[y+1] conj(z[y]))``: immune to wrapping for |g| < pi rad/px
    and weighted by |z|^2. (0, 0) when ``z`` is zero."""
    pair_y = mask[1:, :] & mask[:-1, :]
    pair_x = mask[:, 1:] & mask[:, :-1]
    sy = np.sum((z[1:, :] * np.conj(z[:-1, :]))[pair_y])
    sx = np.sum((z[:, 1:] * np.conj(z[:, :-1]))[pair_x])
    return (float(np.angle(sy)) if sy != 0 else 0.0, float(np.angle(sx)) if sx != 0 else 0.0)


def _phase_plane(z: np.ndarray, mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """Weighted least-squares plane fit of the wrapped phase of ``z`` over ``mask``.

    Returns (c, gy, gx, yc, xc) with ``angle(z) ~ c + gy (y - yc) + gx (x - xc)``. The gradient is
    first estimated from the circular mean of neighbour phase differences (robust to wrapping for
    ramps below pi rad/px), then refined by least squares on the unwrapped residual weighted by |z|.
    """
    yy, xx = np.nonzero(mask)
    yc, xc = float(yy.mean()), float(xx.mean())
    gy0, gx0 = _neighbour_gradient(z, mask)
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
                   max_shift: float = MAX_SHIFT_PX,
                   illumination: np.ndarray | None = None) -> Alignment:
    """Align a complex reconstruction (H, W) to the complex ground truth (H, W) over ``mask``.

    (a) Registration: ``skimage.registration.phase_cross_correlation`` (plain cross-correlation,
        ``normalization=None``) of the complex images on the region's bounding box weighted by
        :func:`registration_window` (``illumination``, optional, is the summed probe intensity
        (H, W) in units of max |P|^2), weighted mean removed, ``upsample`` (1/upsample pixel
        precision), repeated on the shifted image up to ``REGISTRATION_PASSES`` times; the total
        is clipped to ``max_shift`` pixels per axis. Because a phase ramp decorrelates the
        images, the same is done for a copy whose phase gradient relative to the truth
        (circular mean of neighbour differences) is removed, and the shift whose shifted image
        explains more of the truth (``|sum conj(r) t|^2 / sum |r|^2``) is kept. It is applied to
        the reconstruction with ``scipy.ndimage.fourier_shift`` (reflect-padded).
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
    window = registration_window(mask, illumination)
    pad = int(np.ceil(max_shift)) + 8

    yy, xx = np.mgrid[0 : t.shape[0], 0 : t.shape[1]]

    # (a) registration. A phase ramp decorrelates the images, so a second candidate registers a
    # copy whose phase gradient relative to the truth (estimated before registration) is removed;
    # the candidate whose shifted image explains more of the truth (least-squares) is kept. The
    # ramp itself is fitted in (c), after the shift.
    gy0, gx0 = _neighbour_gradient(np.where(mask, t * np.conj(r), 0), mask)
    candidates = [r]
    if gy0 or gx0:
        candidates.append(r * np.exp(1j * (gy0 * yy + gx0 * xx)))
    best = None
    for k, cand in enumerate(candidates):
        shift, capped, moved = _iterate_registration(cand, t, window, box, upsample, max_shift, pad)
        cm = moved[mask]
        den = float(np.sum(np.abs(cm) ** 2))
        score = abs(np.sum(np.conj(cm) * t[mask])) ** 2 / den if den > 0 else 0.0
        if best is None or score > best[0]:
            best = (score, shift, capped, moved if k == 0 else None)
    _, shift, capped, shifted = best
    if shifted is None:  # the de-ramped copy won: shift the reconstruction itself
        shifted = _fourier_shift(r, shift, pad)
    rm, tm = shifted[mask], t[mask]

    # (b) global complex scale
    alpha = _ls_scale(rm, tm)

    # (c) phase ramp
    z = np.zeros_like(t)
    z[mask] = tm * np.conj(alpha * rm)
    c, gy, gx, yc, xc = _phase_plane(z, mask)
    plane = c + gy * (yy - yc) + gx * (xx - xc)  # phase of t relative to alpha * r
    deramped = shifted * np.exp(1j * plane)
    beta = _ls_scale(alpha * deramped[mask], tm)  # refit once on the ramp-free image
    scale = alpha * beta
    aligned = scale * deramped
    offset = float(np.angle(np.exp(-1j * (c - gy * yc - gx * xc))))  # wrapped to (-pi, pi]
    return Alignment(
        aligned=aligned,
        shift=(float(shift[0]), float(shift[1])),
        scale=complex(scale),
        ramp=(float(offset), float(-gy), float(-gx)),
        shift_capped=capped,
    )
