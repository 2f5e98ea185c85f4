"""Ground-truth-free evaluation: data residual (Poisson deviance of the re-projected
reconstruction) and the FRC between reconstructions of two interleaved half scans."""

import json

import h5py
import numpy as np
import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig
from ptycho.data.dataset import Dataset
from ptycho.data.generate import simulate_cell
from ptycho.data.split import interleaved_halves
from ptycho.errors import DatasetError
from ptycho.evaluation.evaluate import GROUND_TRUTH_FREE, evaluate_reconstruction
from ptycho.evaluation.residual import data_residual
from ptycho.physics.object import skimage_object
from ptycho.reconstruct.io import Reconstruction, write_reconstruction


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    study = StudyConfig.from_dict(small_study_dict())
    d = tmp_path_factory.mktemp("gtfree")
    simulate_cell(study, "scaled", "1e5", "dense", d / "train.h5", d / "test.h5")
    interleaved_halves(d / "test.h5", d / "h1.h5", d / "h2.h5")
    # the same split without its ground truth (what an external study imports)
    with Dataset(d / "test.h5") as ds, h5py.File(d / "nogt.h5", "w") as f:
        for k in ("diffraction", "positions", "probe"):
            f[k] = ds._f[k][()]
        for k, v in ds._f.attrs.items():
            f.attrs[k] = v
        cfg = ds.config
        cfg["object_size"] = list(ds.object.shape)
        f.attrs["config"] = json.dumps(cfg)
    return d


def _rec(obj, path, arm="pinn_g1", dose=1e5):
    write_reconstruction(path, Reconstruction(
        object=np.asarray(obj, np.complex64), weight=np.ones(obj.shape, np.float32), arm=arm,
        gridsize=1, dose=dose, overlap_view="dense", n_patterns=1, wall_time_s=1.0,
        source="t"))
    return path


def test_halves_are_interleaved_and_complete(cell):
    with Dataset(cell / "test.h5") as t, Dataset(cell / "h1.h5") as a, Dataset(cell / "h2.h5") as b:
        assert a.n + b.n == t.n and a.n - b.n in (0, 1)
        np.testing.assert_array_equal(a.positions, t.positions[0::2])
        np.testing.assert_array_equal(b.read(), t.read()[1::2])
        assert a.split == b.split == "test" and a.config["half"] == 1 and b.config["half"] == 2
        np.testing.assert_array_equal(a.object, t.object)


def test_meta_is_what_a_derived_file_starts_from(cell, tmp_path):
    from ptycho.data.dataset import DatasetWriter

    with Dataset(cell / "test.h5") as t:
        m, a = t.meta(), t.attrs
        assert (m.dose, m.overlap_target, m.overlap_measured, m.overlap_area, m.probe_diameter,
                m.split, m.seed, m.config, m.replicate) == (
            a["dose"], a["overlap_target"], a["overlap_measured"], a["overlap_area"],
            a["probe_diameter"], "test", a["seed"], t.config, 0)
        assert "fluence" in a and m.fluence is None  # belongs to the new file's scan
        changed = t.meta(split="train", seed=5, replicate=2)
        assert (changed.split, changed.seed, changed.replicate, changed.dose) == ("train", 5, 2,
                                                                                  m.dose)
        with DatasetWriter(tmp_path / "d.h5", 3, t.positions[:3], t.probe, t.object,
                           changed) as w:
            w.write(t.read(np.arange(3)) * 2.0)
    with Dataset(tmp_path / "d.h5") as d, Dataset(cell / "h1.h5") as h:
        assert (d.split, d.replicate, d.attrs["seed"], d.dose) == ("train", 2, 5, m.dose)
        assert d.config == m.config and "fluence" not in d.attrs
        assert h.meta(config=m.config) == m  # a half scan: the test split's meta but 'half'


def test_data_residual_is_the_noise_floor_for_the_truth(cell):
    with Dataset(cell / "test.h5") as ds:
        truth, N = ds.object, ds.N
        lit = (ds.read() > 0).sum(axis=(1, 2)).mean()
    r_truth = data_residual(truth, cell / "test.h5")
    # E[deviance] of Poisson data under its true mean is ~1 per pixel with counts >> 1 and less
    # for faint pixels: the truth's residual per pattern is at most the number of lit pixels
    assert 0.3 * lit < r_truth["poisson_deviance"] < 1.2 * lit
    assert r_truth["intensity_scale"] == pytest.approx(1.0, abs=0.01)  # calibrated forward model
    # a global amplitude factor 2 is absorbed by the fitted intensity scale (1/4) ...
    r_scaled = data_residual(2 * truth, cell / "test.h5")
    assert r_scaled["intensity_scale"] == pytest.approx(0.25 * r_truth["intensity_scale"], rel=1e-6)
    assert r_scaled["poisson_deviance"] == pytest.approx(r_truth["poisson_deviance"], rel=1e-6)
    assert r_scaled["poisson_deviance_unscaled"] > 10 * r_truth["poisson_deviance"]
    # ... a wrong object is not, and an empty one is the worst
    other = skimage_object(truth.shape, "camera", "coins")
    r_other = data_residual(other, cell / "test.h5")
    r_zero = data_residual(np.zeros_like(truth), cell / "test.h5")
    assert r_other["poisson_deviance"] > 5 * r_truth["poisson_deviance"]
    assert r_zero["poisson_deviance"] > 10 * r_other["poisson_deviance"]
    assert r_truth["per_pixel"] == pytest.approx(r_truth["poisson_deviance"] / N**2)


def test_evaluation_without_ground_truth(cell, tmp_path):
    with Dataset(cell / "test.h5") as ds:
        truth = ds.object
    rng = np.random.default_rng(0)
    noisy = [truth * (1 + 0.05 * rng.standard_normal(truth.shape)) for _ in range(2)]
    h = [_rec(noisy[k] * np.exp(1j * 0.7 * k), tmp_path / f"h{k}.h5") for k in range(2)]
    rec = _rec(truth, tmp_path / "r.h5")
    out = evaluate_reconstruction(rec, cell / "nogt.h5", tmp_path / "m.json", tmp_path / "a.h5",
                                  halves=h)
    assert out.ground_truth is False and out.ground_truth_free_metrics == list(GROUND_TRUTH_FREE)
    assert set(out.metrics) == {"data", "amplitude", "phase"}
    assert "ssim" not in out.metrics["amplitude"]
    amp = out.metrics["amplitude"]
    # two noisy copies of one object (5% noise) correlate up to fine detail; a global phase of
    # 0.7 rad between them is removed by the alignment
    assert amp["frc17_px_halves"] < 3.0 and out.metrics["phase"]["frc17_px_halves"] < 3.0
    assert out.metrics["data"]["poisson_deviance"] < out.reference["flat_object"]["data"][
        "poisson_deviance"]
    with h5py.File(tmp_path / "a.h5") as f:
        assert set(f) == {"aligned", "mask"}
    # unrelated halves correlate worse
    bad = _rec(skimage_object(truth.shape, "camera", "coins"), tmp_path / "bad.h5")
    out2 = evaluate_reconstruction(rec, cell / "nogt.h5", tmp_path / "m2.json",
                                   tmp_path / "a2.h5", halves=[h[0], bad])
    assert out2.metrics["amplitude"]["frc17_px_halves"] > 2 * amp["frc17_px_halves"]
    with pytest.raises(DatasetError, match="half scans"):
        evaluate_reconstruction(rec, cell / "nogt.h5", tmp_path / "m3.json", tmp_path / "a3.h5")


def test_evaluation_with_ground_truth_adds_the_residual(cell, tmp_path):
    with Dataset(cell / "test.h5") as ds:
        truth = ds.object
    out = evaluate_reconstruction(_rec(truth, tmp_path / "r.h5"), cell / "test.h5",
                                  tmp_path / "m.json", tmp_path / "a.h5")
    assert out.ground_truth is True and out.metrics["amplitude"]["ssim"] > 0.99
    d = out.metrics["data"]["poisson_deviance"]
    assert d == pytest.approx(out.reference["ground_truth"]["data"]["poisson_deviance"])
    assert out.reference["flat_object"]["data"]["poisson_deviance"] > 5 * d
