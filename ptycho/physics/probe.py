"""Structured probes: a circular aperture propagated by Fresnel propagation."""

from __future__ import annotations

import numpy as np

from ptycho.errors import ConfigError


def fresnel_propagate(field: np.ndarray, fresnel_scale: float) -> np.ndarray:
    """Propagate ``field`` (N, N) with the paraxial transfer function exp(-i pi s (fx^2 + fy^2)).

    ``fresnel_scale`` = lambda z / dx^2 (pixels^2), fx and fy in cycles per pixel.
    """
    n0, n1 = field.shape
    fy = np.fft.fftfreq(n0)[:, None]
    fx = np.fft.fftfreq(n1)[None, :]
    H = np.exp(-1j * np.pi * fresnel_scale * (fx**2 + fy**2))
    return np.fft.ifft2(np.fft.fft2(field) * H)


def simulated_probe(N: int, aperture_radius: float = 0.15, fresnel_number: float = 1.5) -> np.ndarray:
    """A disc aperture of radius ``aperture_radius * N`` pixels propagated to Fresnel number
    ``a^2 / (lambda z)``; returns complex64 (N, N) with max |P| = 1. The near-field pattern has
    rings in amplitude and a curved phase, so the probe is structured, not a flat disc.
    """
    if N < 8:
        raise ConfigError(f"probe: N must be >= 8 pixels, got {N}")
    a = aperture_radius * N
    if a < 1.0:
        raise ConfigError(f"probe: aperture radius {a:.2f} px is below one pixel (N = {N})")
    if fresnel_number <= 0:
        raise ConfigError(f"probe: fresnel_number must be > 0, got {fresnel_number}")
    # Propagate on a 2x padded grid so the diffracted field does not wrap, then crop.
    M = 2 * N
    yy, xx = np.mgrid[0:M, 0:M] - M / 2
    # soft (1-pixel raised-cosine) aperture edge: a pixel-sharp disc would alias its edge
    # diffraction into a pixel-to-pixel phase flicker in the outer rings
    r = np.hypot(yy, xx)
    aperture = np.clip(0.5 - (r - a), 0.0, 1.0)
    aperture = (0.5 - 0.5 * np.cos(np.pi * aperture)).astype(np.complex128)
    scale = a**2 / fresnel_number  # lambda z / dx^2
    field = fresnel_propagate(np.fft.ifftshift(aperture), scale)
    field = np.fft.fftshift(field)[M // 2 - N // 2 : M // 2 + N // 2, M // 2 - N // 2 : M // 2 + N // 2]
    field /= np.abs(field).max()
    return field.astype(np.complex64)


def energy_diameter(probe: np.ndarray, fraction: float = 0.9) -> float:
    """Diameter (pixels) of the disc centred on the array centre (N/2, N/2) holding ``fraction``
    of sum |P|^2, interpolated between pixel radii."""
    N0, N1 = probe.shape
    yy, xx = np.mgrid[0:N0, 0:N1]
    r = np.hypot(yy - N0 / 2, xx - N1 / 2).ravel()
    w = (np.abs(probe) ** 2).ravel()
    order = np.argsort(r)
    r, cum = r[order], np.cumsum(w[order]) / w.sum()
    k = int(np.searchsorted(cum, fraction))
    if k == 0:
        return 2.0 * r[0]
    r0, r1, c0, c1 = r[k - 1], r[k], cum[k - 1], cum[k]
    rad = r1 if c1 == c0 else r0 + (fraction - c0) * (r1 - r0) / (c1 - c0)
    return 2.0 * float(rad)


def load_probe(path, N: int) -> np.ndarray:
    from ptycho.errors import DatasetError
    from ptycho.physics.object import load_complex_array

    probe = load_complex_array(path, "probe", "probeGuess", "probe")
    if probe.shape != (N, N):
        raise DatasetError(f"{path}: probe has shape {probe.shape}, expected ({N}, {N}) for N = {N}")
    if np.sum(np.abs(probe) ** 2) <= 0:
        raise DatasetError(f"{path}: probe is zero everywhere")
    return probe
