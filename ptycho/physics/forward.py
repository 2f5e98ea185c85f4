"""Far-field ptychographic forward model (vectorised over batches of positions).

expected counts  lambda = D * |fftshift(FFT_ortho(P * O_patch))|^2 / sum |P|^2
so a transparent object (O = 1) gives exactly D expected photons per pattern (Parseval).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft

from ptycho.errors import DatasetError

SUBPIXEL_MARGIN = 16  # pixels of context around a patch for the Fourier sub-pixel shift


def _taper(M: int, m: int) -> np.ndarray:
    """(M, M) window: 1 over the central M - m pixels, a raised-cosine fall to 0 over m/2 pixels
    at each edge, so the periodic extension of a tapered crop is smooth and the Fourier shift
    of its centre has no Gibbs ringing from the crop edges."""
    w = np.ones(M)
    r = m // 2
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
    w[:r] = ramp
    w[M - r :] = ramp[::-1]
    return np.outer(w, w)


def fft_workers() -> int:
    """FFT threads: the job's thread budget (OMP_NUM_THREADS, set by the workflow runner)."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)))


def patch_corners(positions: np.ndarray, N: int) -> np.ndarray:
    """Integer top-left object pixel floor(c - N/2) of each patch, (n, 2) int64."""
    return np.floor(np.asarray(positions, dtype=np.float64) - N / 2).astype(np.int64)


def patch_footprint(positions: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive pixel extent [lo, hi] along (y, x) that a patch's values depend on: N pixels,
    plus one where the position is fractional (Fourier interpolation between two pixels)."""
    pos = np.asarray(positions, dtype=np.float64)
    lo = patch_corners(pos, N)
    frac = (pos - N / 2) - lo
    hi = lo + N - 1 + (frac > 0)
    return lo, hi


def check_positions(object_shape: tuple[int, int], positions: np.ndarray, N: int) -> None:
    lo, hi = patch_footprint(positions, N)
    H, W = object_shape
    bad = (lo[:, 0] < 0) | (lo[:, 1] < 0) | (hi[:, 0] >= H) | (hi[:, 1] >= W)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(
            f"position {i} {tuple(np.asarray(positions)[i])} puts an {N} x {N} patch outside the "
            f"{H} x {W} object"
        )


def extract_patches(obj: np.ndarray, positions: np.ndarray, N: int) -> np.ndarray:
    """Object patches (n, N, N) complex64 at centre positions (n, 2) (y, x).

    Integer-aligned patches are direct slices. Fractional positions are shifted by Fourier
    interpolation of a crop with ``SUBPIXEL_MARGIN`` pixels of context on each side (tapered
    towards the crop mean outside the central region, see ``_taper``).
    """
    obj = np.asarray(obj)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    check_positions(obj.shape, pos, N)
    corners = patch_corners(pos, N)
    frac = (pos - N / 2) - corners
    out = np.empty((len(pos), N, N), dtype=np.complex64)
    integer = np.all(frac == 0, axis=1)
    for k in np.flatnonzero(integer):
        y, x = corners[k]
        out[k] = obj[y : y + N, x : x + N]
    sub = np.flatnonzero(~integer)
    if sub.size:
        m = SUBPIXEL_MARGIN
        M = N + 2 * m
        padded = np.pad(obj, m, mode="reflect")
        # complex64 keeps the shift accurate to ~1e-6 of the object's magnitude at half the cost
        crops = np.empty((sub.size, M, M), dtype=np.complex64)
        for j, k in enumerate(sub):
            y, x = corners[k]  # object (y - m) is padded (y)
            crops[j] = padded[y : y + M, x : x + M]
        mean = crops.mean(axis=(1, 2), dtype=np.complex128).astype(np.complex64)[:, None, None]
        crops -= mean
        crops *= _taper(M, m).astype(np.float32)[None]
        crops += mean
        k = np.fft.fftfreq(M)
        # value at (i + f) <- multiply the spectrum by exp(+2 pi i k f); separable in y and x
        ry = np.exp(2j * np.pi * k[None, :] * frac[sub, 0][:, None]).astype(np.complex64)[:, :, None]
        rx = np.exp(2j * np.pi * k[None, :] * frac[sub, 1][:, None]).astype(np.complex64)[:, None, :]
        w = fft_workers()
        spec = sfft.fft2(crops, workers=w, overwrite_x=True)
        spec *= ry
        spec *= rx
        shifted = sfft.ifft2(spec, workers=w, overwrite_x=True)
        out[sub] = shifted[:, m : m + N, m : m + N]
    return out


def far_field(exit_waves: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D FFT of exit waves (..., N, N), zero frequency at (N/2, N/2)."""
    spec = sfft.fft2(exit_waves, norm="ortho", workers=fft_workers())
    return np.fft.fftshift(spec, axes=(-2, -1))


def expected_counts(patches: np.ndarray, probe: np.ndarray, dose: float) -> np.ndarray:
    """Expected photon counts (n, N, N) float64 for object patches (n, N, N) at ``dose``.

    The FFT runs in single precision (complex64; relative error ~1e-7 of the peak), the
    normalisation and the returned intensities in double precision.
    """
    if not dose > 0:
        raise DatasetError(f"dose must be > 0 photons per exposure, got {dose}")
    probe = np.asarray(probe)
    if probe.ndim == 3:
        return expected_counts_modes(patches, probe, dose)
    norm = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    if norm <= 0:
        raise DatasetError("probe is zero everywhere")
    exit_waves = probe.astype(np.complex64)[None] * np.asarray(patches, dtype=np.complex64)
    spec = sfft.fft2(exit_waves, norm="ortho", workers=fft_workers(), overwrite_x=True)
    inten = spec.real.astype(np.float64) ** 2
    inten += spec.imag.astype(np.float64) ** 2
    inten *= dose / norm
    return np.fft.fftshift(inten, axes=(-2, -1))


def expected_counts_modes(patches: np.ndarray, modes: np.ndarray, dose: float) -> np.ndarray:
    """Expected counts of mutually incoherent probe modes (M, N, N): the intensities add,
    ``lambda = D sum_m |fftshift(FFT_ortho(P_m O))|^2 / sum_m sum |P_m|^2`` (one mode: exactly
    ``expected_counts``)."""
    modes = np.asarray(modes)
    if modes.ndim != 3 or modes.shape[0] < 1:
        raise DatasetError(f"probe modes must be (M, N, N), got shape {modes.shape}")
    total = float(np.sum(np.abs(modes.astype(np.complex128)) ** 2))
    if total <= 0:
        raise DatasetError("probe is zero everywhere")
    out = None
    for m in modes:
        part = expected_counts(patches, m, dose) * (float(np.sum(np.abs(m.astype(np.complex128))
                                                                 ** 2)) / total)
        out = part if out is None else out + part
    return out


def simulate_expected(obj, probe, positions, dose) -> np.ndarray:
    """Expected counts for positions (n, 2) on ``obj`` with ``probe`` (N, N) or incoherent
    modes (M, N, N) at ``dose``."""
    N = probe.shape[-1]
    return expected_counts(extract_patches(obj, positions, N), probe, dose)
