"""Evaluation: region, alignment, metrics, FRC and the end-to-end evaluation of one recon."""

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from conftest import small_study_dict
from scipy import ndimage
from skimage.metrics import structural_similarity

from ptycho.data.dataset import DatasetMeta, DatasetWriter
from ptycho.errors import DatasetError, PtychoError
from ptycho.evaluation import (
    align_to_truth,
    compute_metrics,
    evaluate_reconstruction,
    evaluation_region,
    frc_curve,
    frc_resolution,
    illumination_map,
    ms_ssim,
)
from ptycho.evaluation.metrics import PSNR_CAP_DB, _ssim_cs_maps, ssim
from ptycho.evaluation.record import MetricsRecord, read_metrics
from ptycho.physics.object import skimage_object
from ptycho.physics.probe import simulated_probe
from ptycho.reconstruct.io import Reconstruction, write_reconstruction

H = W = 96
METRIC_KEYS = {"mae", "mse", "psnr", "psnr_data_range", "ssim", "ms_ssim", "frc50_px", "frc17_px"}


def fshift(img, shift):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), shift))


@pytest.fixture(scope="module")
def truth():
    return skimage_object((H, W)).astype(np.complex128)


@pytest.fixture(scope="module")
def smooth():
    """A smooth random complex object (amplitude ~0.5-1, phase ~ +-1 rad)."""
    rng = np.random.default_rng(3)
    a = ndimage.gaussian_filter(rng.normal(size=(H, W)), 3, mode="wrap")
    p = ndimage.gaussian_filter(rng.normal(size=(H, W)), 3, mode="wrap")
    a = 0.75 + 0.25 * a / np.abs(a).max()
    return a * np.exp(1j * p / np.abs(p).max())


@pytest.fixture(scope="module")
def mask():
    m = np.zeros((H, W), bool)
    m[20:76, 16:80] = True
    return m


def gaussian_probe(N, sigma):
    yy, xx = np.mgrid[0:N, 0:N] - N / 2
    return np.exp(-(yy**2 + xx**2) / (4 * sigma**2)).astype(np.complex64)  # |P|^2 has sigma


# ---------------------------------------------------------------- region


def test_single_position_gives_a_probe_sized_disc():
    N, sigma = 32, 5.0
    probe = gaussian_probe(N, sigma)
    pos = np.array([[48.0, 40.0]])
    ill = illumination_map((H, W), pos, probe)
    assert ill.sum() == pytest.approx(np.sum(np.abs(probe) ** 2), rel=1e-6)
    assert np.unravel_index(ill.argmax(), ill.shape) == (48, 40)
    region = evaluation_region((H, W), pos, probe, threshold=0.1, erosion=2)
    r0 = sigma * np.sqrt(2 * np.log(10))  # radius where |P|^2 = 0.1 max
    assert region.sum() == pytest.approx(np.pi * (r0 - 2) ** 2, rel=0.1)
    cy, cx = np.argwhere(region).mean(axis=0)
    assert abs(cy - 48) < 0.5 and abs(cx - 40) < 0.5
    # no erosion: exactly the thresholded probe
    region0 = evaluation_region((H, W), pos, probe, threshold=0.1, erosion=0)
    assert region0.sum() == np.count_nonzero(np.abs(probe) ** 2 >= 0.1)
    assert np.all(region <= region0)


def test_sparse_positions_keep_a_region_and_sums_add():
    probe = gaussian_probe(16, 3.0)
    pos = np.array([[30.0, 30.0], [30.0, 34.0], [70.0, 70.0]])
    ill = illumination_map((H, W), pos, probe)
    assert ill.sum() == pytest.approx(3 * np.sum(np.abs(probe) ** 2), rel=1e-6)
    region = evaluation_region((H, W), pos, probe)
    assert region[30, 32] and region[70, 70] and not region[50, 50]


def test_empty_region_is_an_error():
    probe = gaussian_probe(16, 3.0)
    with pytest.raises(PtychoError, match="empty"):
        evaluation_region((H, W), np.zeros((0, 2)), probe)
    with pytest.raises(PtychoError, match="empty"):
        evaluation_region((H, W), np.array([[48.0, 48.0]]), gaussian_probe(16, 0.4), erosion=3)
    with pytest.raises(PtychoError, match="probe"):
        evaluation_region((H, W), np.array([[48.0, 48.0]]), np.zeros((16, 16), np.complex64))


# ---------------------------------------------------------------- alignment


@pytest.mark.parametrize("true_shift", [(1.3, -0.7), (-2.45, 3.1), (0.0, 0.0)])
def test_registration_recovers_subpixel_shift(smooth, mask, true_shift):
    recon = fshift(smooth, true_shift)  # the truth displaced by +true_shift
    al = align_to_truth(recon, smooth, mask)
    np.testing.assert_allclose(al.shift, -np.asarray(true_shift), atol=0.05)
    assert not al.shift_capped
    assert np.max(np.abs(al.aligned - smooth)[mask]) < 0.02


def test_shift_is_capped(smooth, mask):
    al = align_to_truth(fshift(smooth, (10.0, 0.0)), smooth, mask, max_shift=4.0)
    assert al.shift_capped and al.shift[0] == -4.0


def test_global_scale_and_phase_offset_removed(truth, mask):
    al = align_to_truth(0.7 * np.exp(0.9j) * truth, truth, mask)
    assert al.shift == (0.0, 0.0)
    assert abs(al.scale) == pytest.approx(1 / 0.7, rel=1e-6)
    assert np.max(np.abs(al.aligned - truth)[mask]) < 1e-5


def test_phase_ramp_removed(truth, mask):
    yy, xx = np.mgrid[0:H, 0:W]
    recon = 0.8 * truth * np.exp(1j * (0.04 * yy - 0.03 * xx + 0.5))
    al = align_to_truth(recon, truth, mask)
    assert al.shift == (0.0, 0.0)
    assert al.ramp[1] == pytest.approx(0.04, abs=1e-6)
    assert al.ramp[2] == pytest.approx(-0.03, abs=1e-6)
    assert np.max(np.abs(al.aligned - truth)[mask]) < 1e-5
    # a ramp that wraps many times over the region, on a shifted reconstruction
    recon = fshift(truth, (1.3, -0.7)) * np.exp(1j * 0.3 * (xx - 0.5 * yy))
    al = align_to_truth(recon, truth, mask)
    np.testing.assert_allclose(al.shift, (-1.3, 0.7), atol=0.05)
    np.testing.assert_allclose(al.ramp[1:], (-0.15, 0.3), atol=1e-3)
    assert np.mean(np.abs(al.aligned - truth)[mask]) < 0.03


def test_zero_reconstruction_keeps_unit_scale(truth, mask):
    al = align_to_truth(np.zeros_like(truth), truth, mask)
    assert al.scale == 1 and al.shift == (0.0, 0.0) and al.ramp == (0.0, 0.0, 0.0)
    assert not np.any(al.aligned)


def test_non_finite_reconstruction_is_an_error(truth, mask):
    bad = truth.copy()
    bad[50, 50] = np.nan
    with pytest.raises(PtychoError, match="NaN"):
        align_to_truth(bad, truth, mask)


# ---------------------------------------------------------------- metrics


def test_identical_images_score_perfectly(truth, mask):
    m = compute_metrics(truth, truth, mask)
    for comp in ("amplitude", "phase"):
        assert set(m[comp]) == METRIC_KEYS
        assert m[comp]["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert m[comp]["ms_ssim"] == pytest.approx(1.0, abs=1e-9)
        assert m[comp]["mae"] == 0 and m[comp]["mse"] == 0
        assert m[comp]["psnr"] == PSNR_CAP_DB
        assert m[comp]["frc50_px"] == 2.0 and m[comp]["frc17_px"] == 2.0
    assert m["complex"]["nce"] == 0
    amp = np.abs(truth)[mask]
    assert m["amplitude"]["psnr_data_range"] == pytest.approx(amp.max() - amp.min())


def _noisy(truth, sigma, seed):
    rng = np.random.default_rng(seed)
    return truth + sigma * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))


def test_zero_and_noise_score_worse_than_noisy_truth_on_every_metric(truth, mask):
    noisy = align_to_truth(_noisy(truth, 0.02, 1), truth, mask).aligned
    good = compute_metrics(noisy, truth, mask)
    rng = np.random.default_rng(2)
    noise = rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape)
    zero = compute_metrics(align_to_truth(np.zeros_like(truth), truth, mask).aligned, truth, mask)
    bad = compute_metrics(align_to_truth(noise, truth, mask).aligned, truth, mask)
    assert zero["complex"]["nce"] == pytest.approx(1.0)
    assert zero["amplitude"]["ssim"] < 0.05
    assert zero["amplitude"]["mae"] == pytest.approx(np.abs(truth)[mask].mean())
    assert zero["amplitude"]["psnr"] < 5
    for worse in (zero, bad):
        assert worse["complex"]["nce"] > good["complex"]["nce"] + 0.5
        for comp in ("amplitude", "phase"):
            g, w = good[comp], worse[comp]
            assert w["mae"] > g["mae"] and w["mse"] > g["mse"]
            assert w["psnr"] < g["psnr"] - 10
            assert w["ssim"] < g["ssim"] - 0.3 and w["ms_ssim"] < g["ms_ssim"] - 0.3
            assert w["frc50_px"] > g["frc50_px"] and w["frc17_px"] > g["frc17_px"]


def test_blur_lowers_frc_resolution_monotonically(truth, mask):
    res = []
    for s in (0.5, 1.5, 3.0):
        blurred = ndimage.gaussian_filter(truth.real, s) + 1j * ndimage.gaussian_filter(truth.imag,
                                                                                     s)
        res.append(compute_metrics(blurred, truth, mask)["amplitude"]["frc50_px"])
    assert res[0] < res[1] < res[2]


def test_ssim_maps_match_scikit_image():
    rng = np.random.default_rng(5)
    x = ndimage.gaussian_filter(rng.random((64, 64)), 1)
    y = x + 0.05 * rng.normal(size=x.shape)
    ours, _ = _ssim_cs_maps(x, y, 1.0, 11)
    _, ref = structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, full=True)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_ms_ssim_small_images():
    rng = np.random.default_rng(6)
    x = rng.random((50, 50))
    assert ms_ssim(x, x, 1.0) == pytest.approx(1.0)
    assert 0 <= ms_ssim(x, rng.random((50, 50)), 1.0) < 0.5
    with pytest.raises(PtychoError, match="too small"):
        ms_ssim(x[:40, :40], x[:40, :40], 1.0)
    with pytest.raises(PtychoError, match="data_range"):
        ms_ssim(x, x, 0.0)


def test_constant_truth_component_is_an_error_not_nan(truth, mask):
    flat_amp = np.exp(1j * np.angle(truth))
    with pytest.raises(PtychoError, match="amplitude.psnr_data_range"):
        compute_metrics(flat_amp, flat_amp, mask)


# ---------------------------------------------------------------- FRC


def test_frc_of_image_with_itself_is_one(truth, mask):
    freq, curve = frc_curve(np.abs(truth), np.abs(truth), mask)
    assert freq[0] > 0 and freq[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(curve, 1.0, atol=1e-12)


def test_frc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(7)
    freq, curve = frc_curve(rng.normal(size=(H, W)), rng.normal(size=(H, W)))
    assert len(freq) == H // 2
    assert np.mean(np.abs(curve)) < 0.15


def test_frc_of_an_empty_image_is_zero(truth):
    _, curve = frc_curve(np.zeros((H, W)), np.abs(truth))
    assert not np.any(curve)


def test_frc_resolution_interpolates_crossing():
    freq = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert frc_resolution(freq, np.array([0.9, 0.7, 0.3, 0.2, 0.1]), 0.5) == pytest.approx(4.0)
    assert frc_resolution(freq, np.array([0.9, 0.8, 0.7, 0.6, 0.6]), 0.5) == 2.0
    assert frc_resolution(freq, np.array([0.1, 0.8, 0.7, 0.6, 0.6]), 0.5) == pytest.approx(10.0)
    assert frc_resolution(freq, np.array([0.9, 0.7, 0.3, 0.2, 0.1]), 1 / 7) == pytest.approx(
        1 / (0.4 + (0.2 - 1 / 7) / 0.1 * 0.1))


# ---------------------------------------------------------------- end to end


def _write_test_split(path, obj, probe, positions, dose=1000.0, split="test"):
    meta = DatasetMeta(dose=dose, overlap_target=0.5, overlap_measured=0.5, overlap_area=0.3,
                       probe_diameter=8.0, split=split, seed=1, config={"unit": True})
    N = probe.shape[0]
    with DatasetWriter(path, len(positions), positions, probe, obj, meta) as w:
        w.write(np.zeros((len(positions), N, N), np.float32))


def _write_recon(path, obj, dose=1000.0):
    rec = Reconstruction(object=obj, weight=np.ones(obj.shape, np.float32), arm="pinn",
                         gridsize=2, dose=dose, overlap_view="dense", n_patterns=20,
                         wall_time_s=1.5, source="test.h5", info={"epochs": 3})
    write_reconstruction(path, rec)


@pytest.fixture(scope="module")
def split_files(tmp_path_factory, truth):
    d = tmp_path_factory.mktemp("eval")
    probe = simulated_probe(16)
    ys, xs = np.arange(52.0, 84.0, 5.0), np.arange(12.0, 86.0, 5.0)
    positions = np.array([(y, x) for y in ys for x in xs])
    obj = truth.astype(np.complex64)
    _write_test_split(d / "test.h5", obj, probe, positions)
    return d, obj


def test_evaluate_reconstruction_end_to_end(split_files):
    d, obj = split_files
    _write_recon(d / "perfect.h5", obj)
    out = evaluate_reconstruction(d / "perfect.h5", d / "test.h5", d / "m.json", d / "a.h5")
    saved = json.loads((d / "m.json").read_text())
    assert saved == json.loads(json.dumps(out.to_json()))
    assert read_metrics(d / "m.json") == MetricsRecord.from_json(saved)  # read back: the same record
    assert set(saved) == {"arm", "gridsize", "dose", "dose_label", "overlap_view", "region_pixels",
                          "alignment", "metrics", "frc", "recon_wall_time_s", "recon_info",
                          "reference", "evaluation", "replicate", "fluence", "intervals",
                          "bootstrap", "frc_limits", "recon_path", "test_path", "ground_truth",
                          "data_residual"}
    assert (saved["arm"], saved["gridsize"], saved["dose_label"]) == ("pinn", 2, "1e3")
    assert saved["recon_info"] == {"epochs": 3} and saved["recon_wall_time_s"] == 1.5
    assert set(saved["alignment"]) == {"shift", "shift_capped", "scale_abs", "scale_phase", "ramp"}
    assert set(saved["metrics"]) == {"amplitude", "phase", "complex", "data"}
    assert saved["metrics"]["data"]["poisson_deviance"] == saved["data_residual"]["poisson_deviance"]
    for comp in ("amplitude", "phase"):
        assert set(saved["metrics"][comp]) == METRIC_KEYS
        assert saved["metrics"][comp]["ssim"] > 0.99
        assert len(saved["frc"][comp]["freq"]) == len(saved["frc"][comp]["frc"]) > 10
    assert saved["metrics"]["complex"]["nce"] < 1e-6
    # the flat-object floor of the cell: scored like an arm, far below a perfect reconstruction
    flat = saved["reference"]["flat_object"]
    assert set(flat["amplitude"]) == METRIC_KEYS
    for comp in ("amplitude", "phase"):
        assert flat[comp]["ssim"] < 0.9 * saved["metrics"][comp]["ssim"]
        assert flat[comp]["mae"] > 1e-3
    assert 0.1 < flat["complex"]["nce"] < 1.0
    with h5py.File(d / "a.h5", "r") as f:
        assert f["aligned"].dtype == np.complex64 and f["truth"].dtype == np.complex64
        mask = f["mask"][()].astype(bool)
        assert mask.sum() == saved["region_pixels"] > 100
        assert not mask[:40].any()  # the region lies in the test half
        np.testing.assert_allclose(f["aligned"][()][mask], obj[mask], atol=1e-5)


def test_evaluate_zero_reconstruction_scores_worst(split_files):
    d, obj = split_files
    _write_recon(d / "zero.h5", np.zeros_like(obj))
    out = evaluate_reconstruction(d / "zero.h5", d / "test.h5", d / "mz.json", d / "az.h5")
    assert out.metrics["complex"]["nce"] == pytest.approx(1.0)
    assert out.metrics["amplitude"]["ssim"] < 0.05
    assert out.alignment["scale_abs"] == 1.0


def test_evaluate_rejects_mismatched_files(split_files, tmp_path):
    d, obj = split_files
    _write_recon(tmp_path / "dose.h5", obj, dose=5000.0)
    with pytest.raises(DatasetError, match="dose"):
        evaluate_reconstruction(tmp_path / "dose.h5", d / "test.h5", tmp_path / "m.json",
                                tmp_path / "a.h5")
    _write_recon(tmp_path / "shape.h5", obj[:80])
    with pytest.raises(DatasetError, match="ground truth"):
        evaluate_reconstruction(tmp_path / "shape.h5", d / "test.h5", tmp_path / "m.json",
                                tmp_path / "a.h5")
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "a.h5").exists()


def test_workflow_script_runs_without_deep_learning_frameworks(split_files, repo, tmp_path):
    d, obj = split_files
    _write_recon(tmp_path / "r.h5", obj)
    study = small_study_dict(intervals={"resamples": 200}, seeds={"bootstrap": 5})
    code = textwrap.dedent(f"""
        import runpy, sys, types
        smk = types.SimpleNamespace(
            input=types.SimpleNamespace(recon={str(tmp_path / 'r.h5')!r},
                                        test={str(d / 'test.h5')!r}),
            output=types.SimpleNamespace(metrics={str(tmp_path / 'm.json')!r},
                                         aligned={str(tmp_path / 'a.h5')!r}),
            params=types.SimpleNamespace(study={study!r}),
            log=[{str(tmp_path / 'log.txt')!r}], threads=1, rule="evaluate_arm")
        runpy.run_path({str(repo / 'workflow/scripts/evaluate_arm.py')!r},
                       init_globals={{"snakemake": smk}})
        bad = [m for m in ("tensorflow", "torch", "keras") if m in sys.modules]
        assert not bad, bad
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["metrics"]["phase"]["ssim"] > 0.99
    # the study's interval settings reach the evaluation
    assert (m["bootstrap"]["resamples"], m["bootstrap"]["seed"]) == (200, 5)


def test_patch_error_profile_recovers_a_shared_bias_and_the_gain():
    """Predicted patches = the true patches' amplitude plus one bias map (and a phase the profile
    must ignore): the shared bias comes back exactly, the RMSE is its magnitude, the truth's
    spread is the patches' own, and a uniform 10% brightening shows as gain 1.1 with no spread."""
    from ptycho.evaluation.patches import PatchErrorProfile
    from ptycho.physics.forward import extract_patches

    N = 16
    obj = skimage_object((64, 64))
    probe = simulated_probe(N)
    rng = np.random.default_rng(0)
    pos = rng.uniform(N / 2 + 1, 64 - N / 2 - 1, (40, 2))
    pos[:10] = np.round(pos[:10])  # integer and fractional centres
    true = np.abs(extract_patches(obj, pos, N)).astype(np.float64)
    yy, xx = np.mgrid[:N, :N] - N / 2 + 0.5
    bias = 0.05 * np.cos(np.hypot(yy, xx) / 3)
    prof = PatchErrorProfile(obj, probe)
    prof.add((true[:25] + bias) * np.exp(1j * 0.7), pos[:25])  # two batches
    prof.add(true[25:] + bias, pos[25:])
    r = prof.result(ring_px=2)
    assert r["n_patches"] == 40
    np.testing.assert_allclose(r["bias"], bias, atol=1e-6)
    np.testing.assert_allclose(r["rmse"], np.abs(bias), atol=1e-6)
    np.testing.assert_allclose(r["true_std"], true.std(0), atol=1e-6)
    centre = r["rings"][0]
    assert centre["r_px"] == [0, 2]
    assert centre["bias"] == pytest.approx(bias[np.hypot(yy, xx) < 2].mean(), abs=1e-6)
    assert centre["probe_intensity"] > r["rings"][-1]["probe_intensity"]

    bright = PatchErrorProfile(obj, probe)
    bright.add(1.1 * true, pos)
    g = bright.result()["gain"]
    assert g["mean"] == pytest.approx(1.1, abs=1e-6) and g["std"] < 1e-6


def test_patch_error_profile_rejects_bad_input():
    from ptycho.evaluation.patches import PatchErrorProfile

    obj = skimage_object((64, 64))
    prof = PatchErrorProfile(obj, simulated_probe(16))
    with pytest.raises(PtychoError, match="no patches"):
        prof.result()
    with pytest.raises(PtychoError, match=r"\(n, 16, 16\)"):
        prof.add(np.ones((3, 8, 8)), np.full((3, 2), 32.0))
    with pytest.raises(PtychoError, match="2-D"):
        PatchErrorProfile(np.ones((4, 4, 4)), simulated_probe(16))
    with pytest.raises(PtychoError, match="non-zero square"):
        PatchErrorProfile(obj, np.zeros((16, 16)))


def test_downsampled_ssim_averages_pixel_noise_and_keeps_factor_one(truth, mask):
    """Factor 1 is the plain SSIM; white noise at the pixel scale is averaged by a coarser grid,
    so the SSIM of a noisy copy rises with the factor while a perfect copy stays at 1."""
    from ptycho.evaluation.metrics import downsampled_ssim

    t = np.abs(truth)
    x = t + 0.08 * np.random.default_rng(5).normal(size=t.shape)
    R = float(t[mask].max() - t[mask].min())
    assert downsampled_ssim(x, t, mask, 1) == pytest.approx(ssim(x, t, R, mask), abs=1e-12)
    s1, s2, s3 = (downsampled_ssim(x, t, mask, f) for f in (1, 2, 3))
    assert s1 + 0.1 < s2 < s3
    assert downsampled_ssim(t, t, mask, 2.5) == pytest.approx(1.0, abs=1e-9)


def test_downsampled_ssim_rejects_bad_input(truth, mask):
    from ptycho.evaluation.metrics import downsampled_ssim

    t = np.abs(truth)
    with pytest.raises(PtychoError, match="factor must be"):
        downsampled_ssim(t, t, mask, 0.5)
    with pytest.raises(PtychoError, match="does not match"):
        downsampled_ssim(t, t, mask[:10], 2)
    with pytest.raises(PtychoError, match="constant"):
        downsampled_ssim(t, np.ones_like(t), mask, 2)
    with pytest.raises(PtychoError, match="no region pixel"):
        downsampled_ssim(t, t, np.eye(H, W, dtype=bool), 2)


def test_ssim_at_scale_factor_one_is_the_evaluation_and_the_flat_floor_falls(split_files):
    """At factor 1 the rescaled scores are the evaluation's own (reconstruction and flat object);
    at factor 2 a perfect reconstruction still scores 1 while the flat object's floor changes."""
    from ptycho.evaluation.evaluate import ssim_at_scale

    d, obj = split_files
    _write_recon(d / "scale.h5", obj)
    ev = evaluate_reconstruction(d / "scale.h5", d / "test.h5", d / "ms.json", d / "as.h5")
    one = ssim_at_scale(d / "scale.h5", d / "test.h5", 1)
    flat = ev.reference["flat_object"]
    for comp in ("amplitude", "phase"):
        assert one["reconstruction"][comp] == pytest.approx(ev.metrics[comp]["ssim"], abs=1e-6)
        assert one["flat_object"][comp] == pytest.approx(flat[comp]["ssim"], abs=1e-6)
    two = ssim_at_scale(d / "scale.h5", d / "test.h5", 2)
    assert two["factor"] == 2.0
    assert two["reconstruction"]["amplitude"] > 0.99 and two["reconstruction"]["phase"] > 0.99
    assert two["flat_object"]["amplitude"] != pytest.approx(flat["amplitude"]["ssim"], abs=1e-3)
