"""Model errors of a real acquisition: the probe and the scan positions the arms are told
(nominal) differ from the ones that made the data (true), and the illumination may be partially
coherent (several mutually incoherent probe modes whose intensities add).

Probe error
    ``relative_probe_error(nominal, true) = min_c ||c P_nom - P_true|| / ||P_true||`` (c one
    complex number: a global scale and phase are not errors, every arm fits them). A requested
    error eps is produced physically by one of three kinds, the kind's parameter found by
    bisection so the recorded error meets eps (to 1e-4 relative):

    * ``defocus``: the nominal probe is the true probe propagated further by ``delta_s`` (the
      Fresnel scale lambda dz / dx^2, px^2): a propagation-distance (Fresnel-number) error;
    * ``aperture``: the nominal probe is made by an aperture of another radius at the same
      distance (simulated probes only: a probe read from a file has no aperture to change);
    * ``aberration``: seeded random low-order aberrations (astigmatism, coma, trefoil, spherical)
      applied as a phase over the probe's angular spectrum, scaled to an RMS phase (rad).

Position error
    nominal = centre + (1 + scale) R(rotation) (true - centre) + drift (linear in scan order,
    along the diagonal) + jitter; the jitter is Gaussian with RMS length ``jitter_px`` (each
    coordinate has standard deviation ``jitter_px / sqrt(2)``), seeded. Nominal positions are
    clipped to the scan region (patches stay on the object); the recorded RMS error
    ``sqrt(mean |r_nom - r_true|^2)`` is measured after clipping.

Partial coherence
    ``coherent_modes(probe, fractions)``: mode 0 is the probe, mode k >= 1 the probe times a
    low-order polynomial (x, y, x^2 - y^2, xy, ...) orthogonalised against the previous modes;
    mode k carries the power fraction ``fractions[k]`` of the probe's power.
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.errors import ConfigError
from ptycho.physics.probe import fresnel_propagate, simulated_probe

PROBE_ERROR_KINDS = ("defocus", "aperture", "aberration")
BISECTION_STEPS = 60


def relative_probe_error(nominal: np.ndarray, true: np.ndarray) -> float:
    """``min_c ||c P_nom - P_true|| / ||P_true||`` over complex c; probes (N, N) or modes (M, N, N)
    (the mode lists are compared mode by mode, the shorter one padded with zero modes)."""
    a = np.asarray(nominal, dtype=np.complex128)
    b = np.asarray(true, dtype=np.complex128)
    a = a[None] if a.ndim == 2 else a
    b = b[None] if b.ndim == 2 else b
    if a.shape[1:] != b.shape[1:]:
        raise ConfigError(f"probe error: probes of shapes {a.shape} and {b.shape} differ")
    M = max(len(a), len(b))
    a = np.concatenate([a, np.zeros((M - len(a),) + a.shape[1:])]) if len(a) < M else a
    b = np.concatenate([b, np.zeros((M - len(b),) + b.shape[1:])]) if len(b) < M else b
    nb = float(np.sum(np.abs(b) ** 2))
    na = float(np.sum(np.abs(a) ** 2))
    if nb <= 0:
        raise ConfigError("probe error: the true probe is zero everywhere")
    if na <= 0:
        return 1.0
    c = np.vdot(a, b) / na  # least-squares complex factor
    return float(np.sqrt(np.sum(np.abs(c * a - b) ** 2) / nb))


def propagate_padded(probe: np.ndarray, fresnel_scale: float) -> np.ndarray:
    """Fresnel propagation by ``fresnel_scale`` (lambda dz / dx^2, px^2) on a 2x zero-padded grid,
    cropped back to (N, N); complex128."""
    p = np.asarray(probe, dtype=np.complex128)
    N0, N1 = p.shape
    pad = np.zeros((2 * N0, 2 * N1), np.complex128)
    pad[N0 // 2 : N0 // 2 + N0, N1 // 2 : N1 // 2 + N1] = p
    out = fresnel_propagate(np.fft.ifftshift(pad), fresnel_scale)
    return np.fft.fftshift(out)[N0 // 2 : N0 // 2 + N0, N1 // 2 : N1 // 2 + N1]


def _aberration_phase(N: int, probe: np.ndarray, rng: np.random.Generator):
    """A unit-RMS low-order phase over the probe's angular spectrum (weighted by its power) and
    the spectrum; returns (phase (N, N) in FFT order, spectrum)."""
    spec = np.fft.fft2(np.asarray(probe, np.complex128))
    w = np.abs(spec) ** 2
    fy = np.fft.fftfreq(N)[:, None] * np.ones((1, N))
    fx = np.fft.fftfreq(N)[None, :] * np.ones((N, 1))
    r = np.hypot(fy, fx)
    order = np.argsort(r.ravel())
    cum = np.cumsum(w.ravel()[order]) / w.sum()
    rp = max(float(r.ravel()[order][min(np.searchsorted(cum, 0.99), r.size - 1)]), 1.0 / N)
    y, x = fy / rp, fx / rp
    rho2 = x**2 + y**2
    terms = [x**2 - y**2, 2 * x * y,  # astigmatism
             (3 * rho2 - 2) * x, (3 * rho2 - 2) * y,  # coma
             x**3 - 3 * x * y**2, 3 * x**2 * y - y**3,  # trefoil
             6 * rho2**2 - 6 * rho2 + 1]  # spherical
    coef = rng.standard_normal(len(terms))
    phase = sum(c * t for c, t in zip(coef, terms))
    phase = phase - np.sum(w * phase) / w.sum()
    rms = math.sqrt(float(np.sum(w * phase**2) / w.sum()))
    return phase / rms, spec


def _solve(err, eps: float, hi: float, key: str, what: str, limit: float) -> float:
    """Smallest parameter t in (0, limit] with err(t) = eps, by bracketing and bisection."""
    lo = 0.0
    while err(hi) < eps:
        lo, hi = hi, 2 * hi
        if hi > limit:
            raise ConfigError(f"{key}: a {what} error cannot reach a relative probe error of "
                              f"{eps:g} (at most {err(lo):.3g} for this probe)")
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if err(mid) < eps else (lo, mid)
        if hi - lo <= 1e-9 * hi:
            break
    return 0.5 * (lo + hi)


def probe_with_error(true: np.ndarray, kind: str, eps: float, *, rng_seed=0,
                     aperture_radius: float | None = None, fresnel_number: float | None = None,
                     key: str = "errors/probe") -> tuple[np.ndarray, dict]:
    """A nominal probe (N, N) complex64 whose relative error against ``true`` is ``eps``.

    ``aperture_radius`` and ``fresnel_number`` (the simulated probe's parameters) are needed by
    kind ``aperture`` only. Returns (nominal, record) with the kind, the parameter found and the
    recorded relative error. ``eps = 0`` returns the true probe unchanged."""
    true = np.asarray(true, dtype=np.complex64)
    if true.ndim != 2 or true.shape[0] != true.shape[1]:
        raise ConfigError(f"{key}: the probe must be (N, N), got {true.shape}")
    N = true.shape[0]
    if kind not in PROBE_ERROR_KINDS:
        raise ConfigError(f"{key}/kind: must be one of {PROBE_ERROR_KINDS}, got {kind!r}")
    if not (math.isfinite(eps) and 0 <= eps < 1):
        raise ConfigError(f"{key}/levels: a relative probe error must lie in [0, 1), got {eps!r}")
    if eps == 0:
        return true.copy(), {"kind": kind, "requested": 0.0, "relative_error": 0.0}
    rec = {"kind": kind, "requested": float(eps)}
    if kind == "defocus":
        def make(t):
            return propagate_padded(true, t)
        t = _solve(lambda s: relative_probe_error(make(s), true), eps, 1.0, key, kind, 1e4 * N)
        rec["defocus_fresnel_scale_px2"] = t
    elif kind == "aperture":
        if aperture_radius is None or fresnel_number is None:
            raise ConfigError(f"{key}/kind: 'aperture' needs a simulated probe (probe/source: "
                              "simulated); a probe read from a file has no aperture to change")
        a = aperture_radius

        def make(t):  # larger aperture, same distance z: F scales with a^2
            return simulated_probe(N, a * (1 + t), fresnel_number * (1 + t) ** 2)
        t = _solve(lambda s: relative_probe_error(make(s), true), eps, 0.01, key, kind,
                   0.5 / a - 1)
        rec["aperture_radius_nominal"] = a * (1 + t)
        rec["aperture_relative_change"] = t
    else:
        phase, spec = _aberration_phase(N, true, np.random.default_rng(rng_seed))

        def make(t):
            return np.fft.ifft2(spec * np.exp(1j * t * phase))
        t = _solve(lambda s: relative_probe_error(make(s), true), eps, 0.05, key, kind, 100.0)
        rec["rms_phase_rad"] = t
    nominal = make(t).astype(np.complex128)
    nominal /= np.abs(nominal).max()
    nominal = nominal.astype(np.complex64)
    rec["relative_error"] = relative_probe_error(nominal, true)
    return nominal, rec


def coherent_modes(probe: np.ndarray, fractions) -> np.ndarray:
    """Mutually incoherent probe modes (M, N, N) complex64 with power fractions ``fractions``
    (summing to 1) of the probe's power: mode 0 the probe's shape, mode k a low-order polynomial
    times the probe, Gram-Schmidt orthogonalised."""
    f = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if f.size < 1 or np.any(f <= 0) or abs(f.sum() - 1) > 1e-6:
        raise ConfigError(f"probe modes: power fractions must be > 0 and sum to 1, got {f.tolist()}")
    p = np.asarray(probe, dtype=np.complex128)
    N0, N1 = p.shape
    yy, xx = np.mgrid[0:N0, 0:N1].astype(np.float64)
    w = np.abs(p) ** 2
    cy, cx = np.sum(w * yy) / w.sum(), np.sum(w * xx) / w.sum()
    sig = math.sqrt(float(np.sum(w * ((yy - cy) ** 2 + (xx - cx) ** 2)) / w.sum()))
    y, x = (yy - cy) / sig, (xx - cx) / sig
    shapes = [np.ones_like(x), x, y, x**2 - y**2, x * y, x**2 + y**2, x**3, y**3]
    if f.size > len(shapes):
        raise ConfigError(f"probe modes: at most {len(shapes)} modes, got {f.size}")
    total = float(np.sum(np.abs(p) ** 2))
    modes = []
    for k in range(f.size):
        m = p * shapes[k]
        for q in modes:
            m = m - np.vdot(q, m) / np.vdot(q, q) * q
        m *= math.sqrt(f[k] * total / float(np.sum(np.abs(m) ** 2)))
        modes.append(m)
    return np.stack(modes).astype(np.complex64)


def positions_with_error(true: np.ndarray, rng: np.random.Generator, *, jitter_px: float = 0.0,
                         scale: float = 0.0, rotation_deg: float = 0.0, drift_px: float = 0.0,
                         centre=None, bounds=None) -> tuple[np.ndarray, dict]:
    """Nominal positions (n, 2) float64 from the true ones (see the module docstring) and the
    record ``{"rms_error_px", "max_error_px", "jitter_px", "scale", "rotation_deg", "drift_px"}``.
    ``bounds`` (y0, y1, x0, x1) clip the nominal positions (patches stay on the object)."""
    for name, v in (("jitter_px", jitter_px), ("drift_px", drift_px)):
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"errors/positions/{name}: must be >= 0 pixels, got {v!r}")
    if not (math.isfinite(scale) and -0.5 < scale < 0.5):
        raise ConfigError(f"errors/positions/scale: must lie in (-0.5, 0.5), got {scale!r}")
    if not math.isfinite(rotation_deg):
        raise ConfigError(f"errors/positions/rotation_deg: must be finite, got {rotation_deg!r}")
    pos = np.asarray(true, dtype=np.float64).reshape(-1, 2)
    n = len(pos)
    c = pos.mean(axis=0) if centre is None else np.asarray(centre, np.float64)
    t = math.radians(rotation_deg)
    R = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    nom = c + (1 + scale) * (pos - c) @ R.T
    if drift_px:
        ramp = np.arange(n) / max(n - 1, 1)
        nom = nom + drift_px * ramp[:, None] * np.array([1.0, 1.0]) / math.sqrt(2)
    noise = rng.standard_normal(pos.shape)  # drawn always: the stream does not depend on jitter
    nom = nom + noise * (jitter_px / math.sqrt(2))
    if bounds is not None:
        y0, y1, x0, x1 = bounds
        nom[:, 0] = np.clip(nom[:, 0], y0, y1)
        nom[:, 1] = np.clip(nom[:, 1], x0, x1)
    d = np.linalg.norm(nom - pos, axis=1)
    rec = {"rms_error_px": float(np.sqrt(np.mean(d**2))) if n else 0.0,
           "max_error_px": float(d.max()) if n else 0.0, "jitter_px": float(jitter_px),
           "scale": float(scale), "rotation_deg": float(rotation_deg), "drift_px": float(drift_px)}
    return nom, rec


def position_rms_error(a: np.ndarray, b: np.ndarray) -> float:
    """``sqrt(mean |a_k - b_k|^2)`` of two position lists (n, 2), pixels."""
    a = np.asarray(a, np.float64).reshape(-1, 2)
    b = np.asarray(b, np.float64).reshape(-1, 2)
    if a.shape != b.shape:
        raise ConfigError(f"position error: {a.shape} and {b.shape} differ")
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


__all__ = ["PROBE_ERROR_KINDS", "coherent_modes", "position_rms_error", "positions_with_error",
           "probe_with_error", "propagate_padded", "relative_probe_error"]
