"""The PINN's trainable probe (``training.train_probe``, docs/robustness.md): on a cell whose
nominal probe has a 25% defocus error, the probe a gridsize-2 PINN learns is nearer the true probe
than the nominal one, and it is stored with the model and written into the arm's reconstruction as
its refined probe (the evaluation's model errors use it). Off, the physics layer is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import small_study_dict


def test_fixed_probe_layer_is_unchanged():
    from ptycho.models.physics_layer import PoissonForward, trained_probe

    probe = np.ones((8, 8), np.complex64)
    fixed = PoissonForward(8, 1e3, probe)
    fixed.build(None)
    assert sorted(w.name for w in fixed.weights) == ["log_scale", "probe_im", "probe_re"]
    assert "train_probe" not in fixed.get_config() and trained_probe(fixed) is None
    free = PoissonForward(8, 1e3, probe, train_probe=True, probe_rate=1.0)
    free.build(None)
    assert sorted(w.name for w in free.trainable_weights) == ["log_scale", "probe_delta_im",
                                                              "probe_delta_re"]
    np.testing.assert_array_equal(trained_probe(free), probe)  # starts at the nominal probe


def test_trainable_probe_pinn_ends_nearer_the_true_probe(tmp_path):
    from ptycho.config import StudyConfig
    from ptycho.data.dataset import Dataset
    from ptycho.data.generate import simulate_cell
    from ptycho.evaluation.evaluate import model_errors
    from ptycho.physics.errors import relative_probe_error
    from ptycho.reconstruct.inference import reconstruct_network
    from ptycho.reconstruct.io import read_reconstruction, write_reconstruction
    from ptycho.training.fit import train_arm

    d = small_study_dict(errors={"probe": {"kind": "defocus", "levels": [0.25]}})
    d["scales"]["scaled"]["training"] = {
        "epochs": 20, "batch_size": 16, "learning_rate": 0.003, "filters": 8, "depth": 2,
        "patience": 100, "plateau_patience": 100, "train_probe": True,
        "probe_learning_rate_scale": 1.0}
    study = StudyConfig.from_dict(d)
    tr, te = tmp_path / "train.h5", tmp_path / "test.h5"
    simulate_cell(study, "scaled", "1e5", "dense", tr, te, error_level="probe25")
    out = {k: tmp_path / f"m.{k}" for k in ("keras", "json", "csv", "png")}
    bundle = train_arm("pinn_g2", tr, study, "scaled", out["keras"], out["json"], out["csv"],
                       out["png"], threads=1)
    assert bundle["config"]["training"]["train_probe"] is True
    rec = reconstruct_network(out["keras"], out["json"], te, batch_size=64)
    write_reconstruction(tmp_path / "recon.h5", rec)
    back = read_reconstruction(tmp_path / "recon.h5")
    assert back.probe.shape == (1, 16, 16)
    with Dataset(te, require_object=False) as ds:
        assert relative_probe_error(ds.probe, ds.true_probe) == pytest.approx(0.25, rel=1e-3)
    me = model_errors(back, te)
    assert me["refined"] == ["probe"]
    # measured 0.250 -> 0.185 (20 epochs, seeded, 1 thread)
    assert me["probe_error"] < 0.85 * me["nominal_probe_error"]
