"""Stitch object patches into the full object with probe-intensity weights (pure NumPy).

    object(u) = sum_k w_k(u) O_k(u) / sum_k w_k(u),   w_k(u) = |P(u - c_k + N/2)|^2

Patch pixel (i, j) of a centre (cy, cx) belongs to object pixel (cy - N/2 + i, cx - N/2 + j), as in
``ptycho.physics.forward.extract_patches``. For a fractional centre the patch is resampled onto the
integer object grid by the inverse Fourier shift (``shift_to_grid``, reflect-padded so the patch edge,
where |P|^2 is small anyway, does not ring) and the weight |P|^2 is shifted the same way. Integer
centres are added directly, so stitching the exact patches of an object at integer positions gives
the object back to rounding; at fractional centres the error is that of Fourier interpolation.

Memory is the two (H, W) accumulators plus one batch of patches: ``StitchAccumulator.add`` can be
called batch by batch.
"""

from __future__ import annotations

import numpy as np

from ptycho.errors import DatasetError
from ptycho.physics.forward import SUBPIXEL_MARGIN, patch_corners

DEFAULT_THRESHOLD = 1e-3  # of the probe's peak intensity: pixels with less weight are set to 0


def shift_to_grid(patches: np.ndarray, frac: np.ndarray, mode: str = "reflect") -> np.ndarray:
    """Resample patches sampled at (corner + f + i) onto the integer pixels corner - 1 ... corner + N.

    The inverse of ``extract_patches``' sub-pixel shift: Fourier interpolation of each patch padded
    by ``SUBPIXEL_MARGIN`` pixels (``mode`` as ``np.pad``; the patch edge is where |P|^2 is small),
    evaluated at (j - f). Returns (n, N + 2, N + 2): one extra pixel on each side, since a shifted
    patch touches N + 1 pixels per axis.
    """
    patches = np.asarray(patches)
    m = SUBPIXEL_MARGIN
    padded = np.pad(patches, ((0, 0), (m, m), (m, m)), mode=mode)
    return _shift_spectrum(np.fft.fft2(padded), frac, patches.shape[1])


def _shift_spectrum(spectrum: np.ndarray, frac: np.ndarray, N: int) -> np.ndarray:
    """``shift_to_grid`` from the spectra (n or 1, M, M) of the padded patches: the phase ramp
    exp(-2 pi i k f) is separable in y and x, and the inverse transform runs along y first, so
    the x transform only sees the N + 2 rows that are kept."""
    m = SUBPIXEL_MARGIN
    M = N + 2 * m
    k = np.fft.fftfreq(M)
    frac = np.asarray(frac, np.float64).reshape(-1, 2)
    # value at pixel j <- patch at (j - f): multiply the spectrum by exp(-2 pi i k f)
    ry = np.exp(-2j * np.pi * k[None, :] * frac[:, 0, None])[:, :, None]
    rx = np.exp(-2j * np.pi * k[None, :] * frac[:, 1, None])[:, None, :]
    rows = np.fft.ifft(spectrum * ry * rx, axis=1)[:, m - 1 : m + N + 1]
    return np.fft.ifft(rows, axis=2)[:, :, m - 1 : m + N + 1]


def to_grid(patches: np.ndarray, positions: np.ndarray, weight: np.ndarray):
    """Patches and their weights on the integer object grid, each (n, N + 2, N + 2).

    Returns (corners (n, 2) int64: object pixel of element [0, 0], shifted patches complex128,
    weights float64). A fractional centre is resampled by ``shift_to_grid`` (and the weight
    |P|^2 shifted the same way, clipped at 0); an integer centre is copied exactly, with a
    zero-weight border, so that every record has the same shape.
    """
    patches = np.asarray(patches)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    N = weight.shape[0]
    if patches.ndim != 3 or patches.shape[1:] != (N, N) or len(patches) != len(pos):
        raise DatasetError(f"stitching: patches {patches.shape} and positions {pos.shape} do not "
                           f"match (n, {N}, {N}) and (n, 2)")
    corners = patch_corners(pos, N)
    frac = (pos - N / 2) - corners
    integer = np.all(frac == 0, axis=1)
    shifted = np.zeros((len(pos), N + 2, N + 2), np.complex128)
    weights = np.zeros((len(pos), N + 2, N + 2), np.float64)
    shifted[integer, 1:-1, 1:-1] = patches[integer]
    weights[integer, 1:-1, 1:-1] = weight
    sub = np.flatnonzero(~integer)
    if sub.size:
        shifted[sub] = shift_to_grid(patches[sub], frac[sub])
        m = SUBPIXEL_MARGIN  # every weight is the same |P|^2: one spectrum for all
        spec = np.fft.fft2(np.pad(weight.astype(np.complex128), m))[None]
        weights[sub] = np.clip(_shift_spectrum(spec, frac[sub], N).real, 0.0, None)
    return corners - 1, shifted, weights


class StitchAccumulator:
    """Accumulate numerator sum w O and denominator sum w over the object grid."""

    def __init__(self, probe: np.ndarray, object_shape: tuple[int, int]):
        probe = np.asarray(probe)
        if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
            raise DatasetError(f"probe must be square (N, N), got shape {probe.shape}")
        self.N = int(probe.shape[0])
        self.weight = np.abs(probe.astype(np.complex128)) ** 2
        if not self.weight.max() > 0:
            raise DatasetError("probe is zero everywhere")
        self.object_shape = (int(object_shape[0]), int(object_shape[1]))
        self.num = np.zeros(self.object_shape, np.complex128)
        self.den = np.zeros(self.object_shape, np.float64)
        self.n_patches = 0

    def add(self, patches: np.ndarray, positions: np.ndarray) -> None:
        """Add patches (n, N, N) complex at centres (n, 2) (y, x) in object pixels."""
        self.add_on_grid(*to_grid(patches, positions, self.weight))

    def add_on_grid(self, corners: np.ndarray, shifted: np.ndarray, weights: np.ndarray) -> None:
        """Add records already on the object grid (``to_grid`` output): blocks at ``corners``
        (top-left object pixels), values ``shifted`` with weights ``weights``."""
        for k in range(len(corners)):
            self._accumulate(corners[k], weights[k] * shifted[k], weights[k])
        self.n_patches += len(corners)

    def _accumulate(self, corner, num: np.ndarray, den: np.ndarray) -> None:
        """Add a (h, w) block at ``corner`` (top-left), clipped to the object."""
        H, W = self.object_shape
        y0, x0 = int(corner[0]), int(corner[1])
        h, w = num.shape
        ya, xa = max(0, y0), max(0, x0)
        yb, xb = min(H, y0 + h), min(W, x0 + w)
        if ya >= yb or xa >= xb:
            return
        self.num[ya:yb, xa:xb] += num[ya - y0 : yb - y0, xa - x0 : xb - x0]
        self.den[ya:yb, xa:xb] += den[ya - y0 : yb - y0, xa - x0 : xb - x0]

    def result(self, threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
        """(object (H, W) complex128, weight (H, W) float64).

        object = num / den where den > threshold * max |P|^2, else 0; weight = den (the summed probe
        intensity, clipped at 0 where the Fourier shift leaves tiny negative values).
        """
        den = np.clip(self.den, 0.0, None)
        ok = den > threshold * self.weight.max()
        obj = np.zeros(self.object_shape, np.complex128)
        obj[ok] = self.num[ok] / den[ok]
        return obj, den


def stitch_patches(patches: np.ndarray, positions: np.ndarray, probe: np.ndarray,
                   object_shape: tuple[int, int],
                   threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Stitch all patches at once; returns (object, weight) as ``StitchAccumulator.result``."""
    acc = StitchAccumulator(probe, object_shape)
    acc.add(patches, positions)
    return acc.result(threshold)
