"""Model errors of a real acquisition (docs/robustness.md): nominal probe and positions that differ
from the true ones, partially coherent data, and their error levels in the study."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig
from ptycho.data.dataset import Dataset
from ptycho.data.generate import simulate_cell
from ptycho.errors import ConfigError
from ptycho.physics.errors import (
    coherent_modes,
    positions_with_error,
    probe_with_error,
    relative_probe_error,
)
from ptycho.physics.forward import expected_counts, expected_counts_modes
from ptycho.physics.probe import simulated_probe

ERRORS = {"probe": {"kind": "defocus", "levels": [0, 0.25]},
          "positions": {"jitter_px": [0, 1.0]},
          "coherence": {"fractions": [[0.8, 0.2]], "nominal_modes": "one"}}


@pytest.mark.parametrize("kind", ["defocus", "aperture", "aberration"])
@pytest.mark.parametrize("eps", [0.1, 0.25])
def test_requested_probe_error_is_recorded_within_5_percent(kind, eps):
    true = simulated_probe(32)  # the default probe (aperture 0.15 N, Fresnel number 1.5)
    nominal, rec = probe_with_error(true, kind, eps, rng_seed=3, aperture_radius=0.15,
                                    fresnel_number=1.5)
    measured = relative_probe_error(nominal, true)
    assert measured == pytest.approx(rec["relative_error"], rel=1e-9)
    assert abs(measured - eps) <= 0.05 * eps
    # a global complex factor is no error
    assert relative_probe_error(true * (0.3 - 0.4j), true) < 1e-6


def test_requested_jitter_is_recorded_within_5_percent():
    rng = np.random.default_rng(0)
    true = np.stack(np.meshgrid(np.arange(20, 240, 5.0), np.arange(20, 240, 5.0)), -1).reshape(-1, 2)
    for sigma in (0.5, 1.0):
        nom, rec = positions_with_error(true, np.random.default_rng(7), jitter_px=sigma)
        assert len(true) > 1500
        assert abs(rec["rms_error_px"] - sigma) <= 0.05 * sigma
        assert rec["rms_error_px"] == pytest.approx(
            np.sqrt(np.mean(np.sum((nom - true) ** 2, 1))))
    # systematic errors: a 1% scale about the centre moves a point 100 px away by 1 px
    nom, _ = positions_with_error(np.array([[0.0, 0.0], [100.0, 0.0]]), rng, scale=0.01,
                                  centre=(0.0, 0.0))
    assert nom[1, 0] == pytest.approx(101.0)


def test_one_mode_equals_the_coherent_model_and_modes_add_incoherently():
    rng = np.random.default_rng(1)
    patches = (1 + 0.2 * rng.standard_normal((3, 16, 16))).astype(np.complex64)
    P = simulated_probe(16)
    assert np.allclose(expected_counts_modes(patches, P[None], 1e4),
                       expected_counts(patches, P, 1e4), rtol=1e-6)
    modes = coherent_modes(P, [0.7, 0.3])
    power = np.sum(np.abs(modes) ** 2, axis=(1, 2))
    assert power / power.sum() == pytest.approx([0.7, 0.3], rel=1e-5)
    assert abs(np.vdot(modes[0], modes[1])) < 1e-4 * power.sum()
    flat = np.ones((1, 16, 16), np.complex64)  # a transparent object: D photons in every pattern
    assert expected_counts_modes(flat, modes, 1e4).sum() == pytest.approx(1e4, rel=1e-5)


def _cell(tmp_path, name, study, level=""):
    tr, te = tmp_path / f"{name}_train.h5", tmp_path / f"{name}_test.h5"
    summary = simulate_cell(study, "scaled", "1e5", "dense", tr, te, error_level=level)
    return summary, tr, te


def _arrays(path):
    with Dataset(path) as ds:
        return {"diffraction": ds.read(), "positions": ds.positions, "probe": ds.probe,
                "object": ds.object}


def test_level_zero_reproduces_the_exact_datasets_bit_for_bit(tmp_path):
    plain = StudyConfig.from_dict(small_study_dict())
    with_errors = StudyConfig.from_dict(small_study_dict(errors=ERRORS))
    assert "errors" not in plain.to_dict()  # a study without errors records what it did before
    assert [lv.label for lv in with_errors.errors.levels()] == ["probe25", "jitter1", "modes2p80"]
    _, tr0, te0 = _cell(tmp_path, "plain", plain)
    _, tr1, te1 = _cell(tmp_path, "level0", with_errors, "")
    for a, b in ((tr0, tr1), (te0, te1)):
        x, y = _arrays(a), _arrays(b)
        for key in x:
            assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), key
        with Dataset(b) as ds:
            assert ds.errors is None and not ds.has_model_errors


def test_error_cells_store_nominal_and_true_inputs(tmp_path):
    study = StudyConfig.from_dict(small_study_dict(errors=ERRORS))
    _, _, te0 = _cell(tmp_path, "exact", study)
    exact = _arrays(te0)
    _, _, te = _cell(tmp_path, "probe", study, "probe25")
    with Dataset(te) as ds:
        # the same data (same noise streams), only the probe the arms are told differs
        assert np.array_equal(ds.read(), exact["diffraction"])
        assert np.array_equal(ds.true_probe, exact["probe"])
        assert np.array_equal(ds.positions, exact["positions"])
        assert ds.attrs["probe_error"] == pytest.approx(0.25, rel=1e-3)
        assert relative_probe_error(ds.probe, ds.true_probe) == pytest.approx(0.25, rel=1e-3)
        assert ds.errors["label"] == "probe25" and ds.attrs["error_kind"] == "probe"
    _, _, te = _cell(tmp_path, "pos", study, "jitter1")
    with Dataset(te) as ds:
        assert np.array_equal(ds.true_positions, exact["positions"])
        assert np.array_equal(ds.read(), exact["diffraction"])
        rms = float(np.sqrt(np.mean(np.sum((ds.positions - ds.true_positions) ** 2, 1))))
        assert ds.attrs["position_rms_error_px"] == pytest.approx(rms)
        assert 0.8 < rms < 1.2  # a small split (tens of positions): the 5% test is above
        ds.check_positions()  # nominal positions stay on the object
    _, _, te = _cell(tmp_path, "coh", study, "modes2p80")
    with Dataset(te) as ds:
        assert ds.true_probe.shape == (2, 16, 16) and ds.probe_modes.shape == (1, 16, 16)
        assert not np.array_equal(ds.read(), exact["diffraction"])
        # photons per pattern are conserved: the modes share the probe's power
        assert ds.read().sum() / exact["diffraction"].sum() == pytest.approx(1.0, rel=0.01)
        assert ds.attrs["probe_error"] == pytest.approx(np.sqrt(0.2), rel=1e-3)


@pytest.mark.parametrize("errors, key", [
    ({"positions": {"jitter_px": [-0.5]}}, "errors/positions/jitter_px/0"),
    ({"coherence": {"fractions": [[0.7, 0.2]]}}, "errors/coherence/fractions/0"),
    ({"probe": {"kind": "blur", "levels": [0.1]}}, "errors/probe/kind"),
    ({"probe": {"levels": [1.5]}}, "errors/probe/levels/0"),
])
def test_bad_error_settings_stop_with_one_line_naming_the_key(errors, key):
    with pytest.raises(ConfigError) as exc:
        StudyConfig.from_dict(small_study_dict(errors=errors))
    msg = str(exc.value)
    assert key in msg and "\n" not in msg


def test_an_error_kind_the_probe_cannot_produce_names_the_key(tmp_path):
    # a probe read from a file has no aperture to change
    with pytest.raises(ConfigError, match="errors/probe/kind") as exc:
        StudyConfig.from_dict(small_study_dict(
            probe={"source": "file", "path": "p.h5"},
            errors={"probe": {"kind": "aperture", "levels": [0.1]}}))
    assert "\n" not in str(exc.value)
    # an error larger than the kind can reach
    with pytest.raises(ConfigError, match="errors/probe") as exc:
        probe_with_error(simulated_probe(16), "aperture", 0.99, aperture_radius=0.15,
                         fresnel_number=1.5)
    assert "\n" not in str(exc.value)


def test_preflight_stops_an_unreachable_probe_error_before_any_job():
    from ptycho.data.preflight import check_scale

    study = StudyConfig.from_dict(small_study_dict(
        errors={"probe": {"kind": "aperture", "levels": [0.99]}}))
    with pytest.raises(ConfigError, match="errors/probe") as exc:
        check_scale(study, "scaled", "study.yaml")
    assert "\n" not in str(exc.value) and "study.yaml" in str(exc.value)
