"""Image metrics of an aligned reconstruction against the ground truth, over the evaluation region.

Conventions (docs/conventions.md, "Evaluation"):

- Amplitude is ``|o|``, phase is ``angle(o)`` in radians (the phase of a zero pixel is 0), both
  compared as plain real images (no phase wrapping of differences) after alignment.
- MAE, MSE: means over the region pixels. PSNR = 10 log10(R^2 / MSE) dB with R the
  ground-truth range (max - min) over the region (``psnr_data_range``, reported), capped at
  ``PSNR_CAP_DB`` for (near-)identical images so the number stays finite.
- SSIM: ``skimage.metrics.structural_similarity`` with the explicit data range R, a Gaussian
  window (sigma 1.5, 11 x 11) and population covariances (Wang et al. 2004), computed on the
  region's bounding box; the SSIM map (full=True) is averaged over the region pixels.
- MS-SSIM: Wang, Simoncelli & Bovik (2003), five scales, weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); see :func:`ms_ssim`.
- FRC resolution (pixels) at the 0.5 and 1/7 thresholds; see :mod:`ptycho.evaluation.frc`.
- NCE, the normalised complex error ``||a - t|| / ||t||`` over the region, with ``a`` the aligned
  reconstruction (scale, shift and ramp applied); 0 is perfect, 1 is an all-zero image.

A metric that cannot be computed raises ``PtychoError`` naming it; it never becomes NaN.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from ptycho.errors import PtychoError
from ptycho.evaluation.frc import FRC_THRESHOLDS, frc_curve, frc_resolution
from ptycho.evaluation.region import bounding_box

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_SIGMA = 1.5
SSIM_WIN = 11
SSIM_K1, SSIM_K2 = 0.01, 0.03
MIN_WIN = 3
MIN_DATA_RANGE = 1e-6
"""Smallest ground-truth range (amplitude units or radians) over the region for which PSNR and
(MS-)SSIM are defined; a constant component (e.g. a pure-phase object's amplitude) is an error."""
PSNR_CAP_DB = 100.0
"""PSNR ceiling (dB): reached only when MSE <= 1e-10 R^2, i.e. identical images up to rounding."""


def _crop_box(mask: np.ndarray, min_size: int) -> tuple[slice, slice]:
    """Bounding box of ``mask``, grown symmetrically (within the image) to at least ``min_size``
    pixels per side where the image allows, so the SSIM windows have room."""
    box = list(bounding_box(mask))
    for ax, n in enumerate(mask.shape):
        s = box[ax]
        size = s.stop - s.start
        if size < min_size:
            grow = min(min_size, n) - size
            lo = max(0, s.start - grow // 2)
            hi = min(n, lo + size + grow)
            lo = max(0, hi - (size + grow))
            box[ax] = slice(lo, hi)
    return box[0], box[1]


def _ssim_cs_maps(x: np.ndarray, y: np.ndarray, data_range: float, win: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian SSIM and contrast-structure maps, the same formula as scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``,
    with the Gaussian truncated to a ``win`` x ``win`` window (reflect boundary)."""
    r = (win - 1) // 2
    kw = {"sigma": SSIM_SIGMA, "truncate": (r + 0.25) / SSIM_SIGMA, "mode": "reflect"}
    ux, uy = ndimage.gaussian_filter(x, **kw), ndimage.gaussian_filter(y, **kw)
    vx = ndimage.gaussian_filter(x * x, **kw) - ux * ux
    vy = ndimage.gaussian_filter(y * y, **kw) - uy * uy
    vxy = ndimage.gaussian_filter(x * y, **kw) - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    lum = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1)
    return lum * cs, cs


def _scale_window(shape: tuple[int, int]) -> int:
    """Largest odd window <= SSIM_WIN that fits ``shape``."""
    w = min(SSIM_WIN, *shape)
    return w if w % 2 == 1 else w - 1


def _pool2(z: np.ndarray) -> np.ndarray:
    """2 x 2 block average (an odd last row/column is dropped)."""
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    return z[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _masked_mean(values: np.ndarray, weights: np.ndarray, name: str) -> float:
    """Mean of ``values`` weighted by ``weights`` (a boolean mask or region fractions)."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if not total > 0:
        raise PtychoError(f"{name}: the evaluation region is empty")
    return float(np.sum(values * w, dtype=np.float64) / total)


def _checked_pair(name: str, a, b, data_range: float, mask):
    """Two equal 2-D float64 images, a positive finite data range and a boolean mask (all
    pixels when ``mask`` is None); PtychoError naming the metric otherwise."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise PtychoError(f"{name}: need two equal 2-D images, got {a.shape} and {b.shape}")
    if not (np.isfinite(data_range) and data_range > 0):
        raise PtychoError(f"{name}: data_range must be positive and finite, got {data_range}")
    m = np.ones(a.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    return a, b, m


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float,
            mask: np.ndarray | None = None) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) of real images ``a`` and ``b`` (H, W).

    Five scales; between scales both images are 2 x 2 block-averaged (odd rows/columns dropped).
    ``MS = prod_{j<5} max(cs_j, 0)^w_j * max(ssim_5, 0)^w_5`` with the standard weights
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); cs_j and ssim_5 are the means over the region
    (the mask is block-averaged too, and each coarse pixel is weighted by the fraction of it that
    lies in the region, so sparse regions of small discs keep a region at every scale); negative
    values are clipped at 0 (as in TensorFlow and pytorch-msssim).
    ``data_range`` sets C1 = (0.01 R)^2 and C2 = (0.03 R)^2.

    Windows: the Gaussian has sigma 1.5 px at every scale and an 11 x 11 support. Small images:
    the images are cropped to the mask's bounding box grown to at least 48 px a side where the
    image allows; at a scale whose shorter side is below 11 px the window is reduced to the
    largest odd size that fits (the Gaussian truncated there, as TensorFlow's
    ``ssim_multiscale`` does), never below 3 x 3. An image whose coarsest scale is smaller than
    3 px (shorter side < 48 px) raises ``PtychoError``.
    """
    maps = ms_ssim_maps(a, b, data_range, mask)
    result = 1.0
    for j, (weight, (values, wmap, _)) in enumerate(zip(MS_SSIM_WEIGHTS, maps)):
        val = _masked_mean(values, wmap, f"ms_ssim scale {j + 1}")
        result *= max(val, 0.0) ** weight
    return float(result)


def ms_ssim_maps(a: np.ndarray, b: np.ndarray, data_range: float,
                 mask: np.ndarray | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray, tuple[slice, slice]]]:
    """The five per-scale maps of :func:`ms_ssim`: ``(values, weights, box)`` per scale, with
    ``values`` the contrast-structure map (scales 1-4) or the SSIM map (scale 5) on that scale's
    grid, ``weights`` the fraction of each coarse pixel inside the region and ``box`` the crop of
    the full-resolution image the scales were computed on (coarse pixel (u, v) of scale j covers
    the 2^j x 2^j pixels from ``(box[0].start + u 2^j, box[1].start + v 2^j)``).
    ``ms_ssim = prod_j max(sum(values_j * weights_j) / sum(weights_j), 0) ** w_j``."""
    a, b, m = _checked_pair("ms_ssim", a, b, data_range, mask)
    if m.shape != a.shape:
        raise PtychoError(f"ms_ssim: mask {m.shape} does not match the images {a.shape}")
    n_scales = len(MS_SSIM_WEIGHTS)
    need = MIN_WIN * 2 ** (n_scales - 1)
    box = _crop_box(m, need)
    x, y, mf = a[box], b[box], m[box].astype(np.float64)
    if min(x.shape) < need:
        raise PtychoError(
            f"ms_ssim: image {x.shape[0]} x {x.shape[1]} is too small for {n_scales} scales "
            f"(need >= {need} px a side for a {MIN_WIN} x {MIN_WIN} window at the coarsest scale)"
        )
    out = []
    for j in range(n_scales):
        win = _scale_window(x.shape)
        ssim_map, cs_map = _ssim_cs_maps(x, y, data_range, win)
        if j < n_scales - 1:
            out.append((cs_map, mf, box))
            x, y, mf = _pool2(x), _pool2(y), _pool2(mf)
        else:
            out.append((ssim_map, mf, box))
    return out


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of real images over ``mask``: scikit-image ``structural_similarity`` on the mask's
    bounding box (grown to at least 11 px a side where the image allows) with the explicit
    ``data_range``, Gaussian window (sigma 1.5, 11 x 11), population covariance, ``full=True``;
    the SSIM map is averaged over the region pixels."""
    smap, box = ssim_map(a, b, data_range, mask)
    m = np.ones(np.shape(a), bool) if mask is None else np.asarray(mask, dtype=bool)
    return _masked_mean(smap, m[box], "ssim")


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float, mask: np.ndarray | None = None
             ) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The SSIM map of :func:`ssim` and the box of the image it covers: ``ssim`` is the map's
    mean over ``mask[box]``."""
    a, b, m = _checked_pair("ssim", a, b, data_range, mask)
    box = _crop_box(m, SSIM_WIN)
    if min(a[box].shape) < SSIM_WIN:
        raise PtychoError(f"ssim: image {a.shape} is smaller than the {SSIM_WIN} px window")
    _, smap = structural_similarity(a[box], b[box], data_range=float(data_range),
                                    gaussian_weights=True, sigma=SSIM_SIGMA,
                                    use_sample_covariance=False, full=True)
    return smap, box


def downsampled_ssim(x: np.ndarray, t: np.ndarray, mask: np.ndarray, factor: float) -> float:
    """SSIM of ``x`` against the truth ``t`` with both downsampled ``factor`` times (anti-aliased
    linear resampling, ``skimage.transform.rescale``) and the region ``mask`` with them (nearest,
    then eroded by one pixel so no region pixel mixes in values from outside it); the data range
    is the downsampled truth's over that region. ``factor`` 1 is :func:`ssim` on the images as
    they are. With the same physical object sampled at twice the pixels, a factor of 2 scores it
    on the coarser grid's scale: the fixed 11-pixel window then covers the same physical area."""
    from scipy.ndimage import binary_erosion
    from skimage.transform import rescale

    x, t, m = _checked_pair("downsampled_ssim", x, t, 1.0, mask)
    if m.shape != x.shape:
        raise PtychoError(f"downsampled_ssim: mask {m.shape} does not match the images {x.shape}")
    if not (np.isfinite(factor) and factor >= 1):
        raise PtychoError(f"downsampled_ssim: factor must be a finite number >= 1, got {factor}")
    if factor > 1:
        x, t = (rescale(a, 1 / factor, order=1, anti_aliasing=True, mode="reflect")
                for a in (x, t))
        m = binary_erosion(rescale(m.astype(np.float64), 1 / factor, order=0) > 0.5,
                           iterations=1)
    if not m.any():
        raise PtychoError(f"downsampled_ssim: no region pixel is left after downsampling "
                          f"{factor:g} times")
    R = float(t[m].max() - t[m].min())
    if not R > MIN_DATA_RANGE:
        raise PtychoError(f"downsampled_ssim: the downsampled truth is constant over the region "
                          f"(range {R:.3g})")
    return ssim(x, t, R, m)


def psnr_from_mse(mse, data_range: float):
    """PSNR (dB) ``10 log10(R^2 / MSE)``, capped at ``PSNR_CAP_DB`` where MSE <= 1e-10 R^2;
    ``mse`` a number or an array (the bootstrap's resamples)."""
    r2 = float(data_range) ** 2
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        db = np.minimum(PSNR_CAP_DB, 10.0 * np.log10(r2 / np.maximum(mse, 1e-300)))
    out = np.where(mse <= 1e-10 * r2, PSNR_CAP_DB, db)
    return float(out) if out.ndim == 0 else out


def _real_metrics(x: np.ndarray, t: np.ndarray, mask: np.ndarray, name: str
                  ) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Metrics of one real component (``x`` reconstruction, ``t`` truth) and its FRC curve."""
    tv, xv = t[mask], x[mask]
    R = float(tv.max() - tv.min())
    if not (np.isfinite(R) and R > MIN_DATA_RANGE):
        raise PtychoError(
            f"{name}.psnr_data_range: the ground-truth {name} is constant over the evaluation "
            f"region (range {R:.3g} <= {MIN_DATA_RANGE}), so PSNR and SSIM have no data range"
        )
    err = xv - tv
    mse = float(np.mean(err**2))
    psnr = psnr_from_mse(mse, R)
    freq, curve = frc_curve(x, t, mask)
    out = {
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "psnr": float(psnr),
        "psnr_data_range": R,
        "ssim": ssim(x, t, R, mask),
        "ms_ssim": ms_ssim(x, t, R, mask),
    }
    for key, thr in FRC_THRESHOLDS.items():
        out[key] = frc_resolution(freq, curve, thr)
    return out, (freq, curve)


def _check_finite(d: dict, prefix: str = "") -> None:
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            _check_finite(v, name + ".")
        elif not math.isfinite(float(v)):
            raise PtychoError(f"metric '{name}' is not finite ({v})")


def metrics_and_curves(aligned: np.ndarray, truth: np.ndarray, mask: np.ndarray
                       ) -> tuple[dict, dict]:
    """:func:`compute_metrics` plus the FRC curves:
    ``{"amplitude": {"freq": [...], "frc": [...]}, "phase": {...}}`` (cycles/pixel, unitless)."""
    a = np.asarray(aligned, dtype=np.complex128)
    t = np.asarray(truth, dtype=np.complex128)
    mask = np.asarray(mask, dtype=bool)
    if a.ndim != 2 or a.shape != t.shape or mask.shape != t.shape:
        raise PtychoError(f"compute_metrics: aligned {a.shape}, truth {t.shape} and mask "
                          f"{mask.shape} must be equal 2-D shapes")
    if not mask.any():
        raise PtychoError("compute_metrics: the evaluation region is empty")
    if not (np.all(np.isfinite(a[mask])) and np.all(np.isfinite(t[mask]))):
        raise PtychoError("compute_metrics: NaN or inf in the aligned reconstruction or truth")
    metrics, curves = {}, {}
    for name, f in (("amplitude", np.abs), ("phase", np.angle)):
        metrics[name], (freq, curve) = _real_metrics(f(a), f(t), mask, name)
        curves[name] = {"freq": freq.tolist(), "frc": curve.tolist()}
    tn = float(np.linalg.norm(t[mask]))
    if tn == 0:
        raise PtychoError("complex.nce: the ground truth is zero over the evaluation region")
    metrics["complex"] = {"nce": float(np.linalg.norm(a[mask] - t[mask]) / tn)}
    _check_finite(metrics)
    return metrics, curves


def compute_metrics(aligned: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    """Metrics of an aligned complex reconstruction (H, W) against the complex truth (H, W) over
    the boolean region ``mask`` (H, W).

    Returns ``{"amplitude": {...}, "phase": {...}, "complex": {"nce": float}}``; amplitude and
    phase each hold ``mae, mse`` (units of the image: amplitude, radians / radians^2),
    ``psnr`` (dB), ``psnr_data_range`` (ground-truth max - min over the region, used for PSNR,
    SSIM and MS-SSIM), ``ssim``, ``ms_ssim`` (unitless) and ``frc50_px``, ``frc17_px`` (FRC
    resolution in pixels at thresholds 0.5 and 1/7). Conventions in the module docstring.
    Raises ``PtychoError`` naming any metric that cannot be computed or is not finite.
    """
    return metrics_and_curves(aligned, truth, mask)[0]
