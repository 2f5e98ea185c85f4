"""Stitch object patches into the full object with probe-intensity weights (pure NumPy).

    object(u) = sum_k w_k(u) O_k(u) / sum_k w_k(u),   w_k(u) = |P(u - c_k + N/2)|^2

Patch pixel (i, j) of a centre (cy, cx) belongs to object pixel (cy - N/2 + i, cx - N/2 + j), as in
``ptycho.physics.forward.extract_patches``. For a fractional centre the weighted patch |P|^2 O_k and
the weight |P|^2 are both moved onto the integer object grid by the same Fourier shift (the inverse
of ``extract_patches``' shift) on a zero-padded crop; since |P|^2 vanishes at the patch edge this
adds no edge ringing of note. Integer centres are added directly, so stitching the exact patches of
an object at integer positions gives the object back to rounding.

Memory is the two (H, W) accumulators plus one batch of patches: ``StitchAccumulator.add`` can be
called batch by batch.
"""

from __future__ import annotations

import numpy as np

from ptycho.errors import DatasetError
from ptycho.physics.forward import SUBPIXEL_MARGIN, patch_corners

DEFAULT_THRESHOLD = 1e-3  # of the probe's peak intensity: pixels with less weight are set to 0


class StitchAccumulator:
    """Accumulate numerator sum w O and denominator sum w over the object grid."""

    def __init__(self, probe: np.ndarray, object_shape: tuple[int, int]):
        probe = np.asarray(probe)
        if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
            raise DatasetError(f"probe must be square (N, N), got shape {probe.shape}")
        self.N = int(probe.shape[0])
        self.weight = (np.abs(probe) ** 2).astype(np.float64)
        if not self.weight.max() > 0:
            raise DatasetError("probe is zero everywhere")
        self.object_shape = (int(object_shape[0]), int(object_shape[1]))
        self.num = np.zeros(self.object_shape, np.complex128)
        self.den = np.zeros(self.object_shape, np.float64)
        self.n_patches = 0

    def add(self, patches: np.ndarray, positions: np.ndarray) -> None:
        """Add patches (n, N, N) complex at centres (n, 2) (y, x) in object pixels."""
        patches = np.asarray(patches)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        N = self.N
        if patches.ndim != 3 or patches.shape[1:] != (N, N) or len(patches) != len(pos):
            raise DatasetError(f"stitching: patches {patches.shape} and positions {pos.shape} do not "
                               f"match (n, {N}, {N}) and (n, 2)")
        corners = patch_corners(pos, N)
        frac = (pos - N / 2) - corners
        integer = np.all(frac == 0, axis=1)
        w = self.weight
        for k in np.flatnonzero(integer):
            self._accumulate(corners[k], w * patches[k], w)
        sub = np.flatnonzero(~integer)
        if sub.size:
            m = SUBPIXEL_MARGIN
            M = N + 2 * m
            wp = np.zeros((sub.size, M, M), np.complex128)
            wp[:, m : m + N, m : m + N] = w * patches[sub]
            ww = np.zeros((M, M), np.float64)
            ww[m : m + N, m : m + N] = w
            ky = np.fft.fftfreq(M)[None, :, None]
            kx = np.fft.fftfreq(M)[None, None, :]
            # extract_patches samples O at (corner + f + i); the inverse moves the samples back by f:
            # value at integer pixel corner + j <- patch at (j - f): spectrum times exp(-2 pi i k f)
            ramp = np.exp(-2j * np.pi * (ky * frac[sub, 0][:, None, None] + kx * frac[sub, 1][:, None, None]))
            num = np.fft.ifft2(np.fft.fft2(wp) * ramp)
            den = np.fft.ifft2(np.fft.fft2(ww)[None] * ramp).real
            for j, k in enumerate(sub):
                self._accumulate(corners[k] - m, num[j], den[j])
        self.n_patches += len(pos)

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
