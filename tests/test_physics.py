"""Physics invariants of the forward model, probe, scan geometry and noise."""

import h5py
import numpy as np
import pytest
from scipy import ndimage

from ptycho.errors import ConfigError, DatasetError, PtychoError
from ptycho.physics.forward import expected_counts, extract_patches, far_field, simulate_expected
from ptycho.physics.noise import poisson_counts
from ptycho.physics.object import skimage_object
from ptycho.physics.probe import energy_diameter, simulated_probe
from ptycho.physics.scan import (
    ScanRegion,
    disc_area_overlap,
    measured_overlap,
    scan_positions,
)


def test_golden_forward_model(golden_path):
    with h5py.File(golden_path, "r") as f:
        obj, probe, pos = f["object"][()], f["probe"][()], f["positions"][()]
        dose, ref = float(f.attrs["dose"]), f["expected_counts"][()]
    got = simulate_expected(obj, probe, pos, dose)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * ref.max())


@pytest.mark.parametrize("dose", [1.0, 1e3, 1e6])
def test_transparent_object_gives_dose_photons(dose):
    probe = simulated_probe(32)
    obj = np.ones((80, 80), np.complex64)
    pos = np.array([[30.0, 30.0], [40.3, 35.7], [50.0, 44.5]])
    lam = simulate_expected(obj, probe, pos, dose)
    np.testing.assert_allclose(lam.sum(axis=(1, 2)), dose, rtol=1e-6)


def test_parseval_far_field():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 32, 32)) + 1j * rng.normal(size=(5, 32, 32))
    F = far_field(x)
    np.testing.assert_allclose(np.sum(np.abs(F) ** 2, axis=(1, 2)), np.sum(np.abs(x) ** 2, axis=(1, 2)),
                               rtol=1e-12)
    # zero frequency sits at (N/2, N/2)
    F1 = far_field(np.ones((1, 32, 32)))
    assert np.unravel_index(np.argmax(np.abs(F1[0])), (32, 32)) == (16, 16)


def test_mean_measured_counts_match_expectation():
    probe = simulated_probe(16)
    obj = skimage_object((64, 64))
    pos = np.tile([[32.0, 32.0]], (4000, 1))
    lam = simulate_expected(obj, probe, pos[:1], 1e3)[0]
    counts = poisson_counts(np.broadcast_to(lam, (4000, 16, 16)), np.random.default_rng(1))
    mean = counts.mean(axis=0)
    # per-pixel mean within 5 standard errors of the Poisson expectation
    se = np.sqrt(lam / 4000) + 1e-9
    assert np.all(np.abs(mean - lam) < 5 * se + 1e-3)
    assert abs(counts.sum(axis=(1, 2)).mean() - lam.sum()) < 3 * np.sqrt(lam.sum() / 4000)


def test_integer_patches_are_slices_and_shift():
    obj = skimage_object((64, 72))
    N = 16
    p = extract_patches(obj, np.array([[20.0, 30.0]]), N)[0]
    np.testing.assert_array_equal(p, obj[12:28, 22:38])
    q = extract_patches(obj, np.array([[23.0, 28.0]]), N)[0]
    np.testing.assert_array_equal(q[:-3, 2:], p[3:, :-2])


def test_subpixel_shift_matches_fourier_interpolation():
    # a band-limited periodic object: the whole-object Fourier shift is exact
    H = W = 96
    yy, xx = np.mgrid[0:H, 0:W]
    obj = (0.7 + 0.2 * np.cos(2 * np.pi * 3 * yy / H) * np.sin(2 * np.pi * 2 * xx / W)) * np.exp(
        1j * 0.5 * np.sin(2 * np.pi * (yy + 2 * xx) / W)
    )
    N, cy, cx, fy, fx = 16, 40.0, 50.0, 0.3, -0.45
    p = extract_patches(obj, np.array([[cy + fy, cx + fx]]), N)[0]
    ref_full = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(obj), (-fy, -fx)))
    ref = ref_full[int(cy - N / 2) : int(cy + N / 2), int(cx - N / 2) : int(cx + N / 2)]
    assert np.max(np.abs(p - ref)) < 2e-3


def test_probe_is_structured_and_diameter_sane():
    p = simulated_probe(64)
    amp, ph = np.abs(p), np.angle(p)
    assert amp.max() == pytest.approx(1.0)
    d = energy_diameter(p)
    assert 8 < d < 48
    disc = (np.hypot(*np.mgrid[-32:32, -32:32]) < d / 2)
    assert np.std(ph[disc]) > 0.05  # phase structure, not a flat disc
    frac = np.sum(np.abs(p[disc]) ** 2) / np.sum(np.abs(p) ** 2)
    assert frac == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("pattern", ["raster", "fermat"])
@pytest.mark.parametrize("target", [0.7, 0.2])
def test_measured_overlap_on_target(pattern, target):
    d = 12.0
    region = ScanRegion.for_object((200, 200), 32)
    pos = scan_positions(pattern, target, d, region, 0.1, 3)
    assert abs(measured_overlap(pos, d) - target) < 0.05
    assert pos[:, 0].min() >= region.y0 and pos[:, 1].max() <= region.x1


def test_scan_is_seeded():
    region = ScanRegion.for_object((120, 120), 16)
    a = scan_positions("raster", 0.5, 6.0, region, 0.1, 5)
    b = scan_positions("raster", 0.5, 6.0, region, 0.1, 5)
    c = scan_positions("raster", 0.5, 6.0, region, 0.1, 6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_disc_area_overlap_limits():
    assert disc_area_overlap(np.array([0.0]), 10.0)[0] == pytest.approx(1.0)
    assert disc_area_overlap(np.array([10.0]), 10.0)[0] == pytest.approx(0.0)


def test_bad_physics_inputs():
    probe = simulated_probe(16)
    obj = np.ones((40, 40), np.complex64)
    with pytest.raises(DatasetError, match="dose"):
        expected_counts(np.ones((1, 16, 16)), probe, 0.0)
    with pytest.raises(DatasetError, match="dose"):
        expected_counts(np.ones((1, 16, 16)), probe, -5.0)
    with pytest.raises(DatasetError, match="outside"):
        extract_patches(obj, np.array([[5.0, 20.0]]), 16)
    with pytest.raises(ConfigError, match="overlap"):
        scan_positions("raster", 1.0, 6.0, ScanRegion.for_object((80, 80), 16), 0.1, 1)
    with pytest.raises(ConfigError, match="overlap"):
        scan_positions("raster", -0.1, 6.0, ScanRegion.for_object((80, 80), 16), 0.1, 1)


def test_fluence_is_dose_times_exposures_per_lit_area():
    """Hand-built scans: fluence = dose x exposures per lit area (docs/conventions.md, "Fluence")."""
    from ptycho.physics.illumination import fluence_map, mean_fluence, scan_fluence

    N, D = 8, 1000.0
    yy, xx = np.mgrid[:N, :N] - (N - 1) / 2
    disc = ((yy**2 + xx**2) <= 9.0).astype(np.complex64) * np.exp(0.3j * xx)  # flat top, 32 px
    area = int(np.count_nonzero(disc))
    # three exposures that do not overlap: every lit pixel receives D / area photons
    pos = np.array([[10.0, 10.0], [10.0, 20.0], [22.0, 14.0]])
    f = fluence_map((40, 40), pos, disc, D)
    lit = f > 0
    assert np.count_nonzero(lit) == 3 * area
    assert f.sum() == pytest.approx(3 * D, rel=1e-12)  # photons are conserved
    assert mean_fluence(f, lit) == pytest.approx(D * 3 / (3 * area), rel=1e-12)
    # a raster at step s with a structured probe: over whole periods, D / s^2 per pixel
    s = 4
    c = np.arange(8.0, 57.0, s)
    raster = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    probe = np.exp(-(yy**2 + xx**2) / 5.0) * np.exp(0.5j * yy)
    f = fluence_map((64, 64), raster, probe, D)
    window = np.zeros((64, 64), bool)
    window[20:44, 16:40] = True  # 6 x 6 periods, away from the scan's edges
    assert mean_fluence(f, window) == pytest.approx(D / s**2, rel=1e-12)
    rec = scan_fluence((64, 64), raster, probe, D, pixel_size_m=2e-8)
    assert rec["exposures_per_px"] == pytest.approx(rec["photons_per_px"] / D)
    assert rec["photons_per_m2"] == pytest.approx(rec["photons_per_px"] / 4e-16)
    # the lit region (10% of the peak, eroded by 2 px) is about the raster's extent
    assert rec["photons_per_px"] == pytest.approx(D / s**2, rel=0.05)
    with pytest.raises(PtychoError, match="dose"):
        fluence_map((64, 64), raster, probe, 0.0)
