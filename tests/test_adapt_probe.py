"""The adapted arm's probe refinement (``adaptation.refine_probe``, docs/robustness.md): on a cell
whose nominal probe has a 25% defocus error, the adapted arm refines the probe on the test scan,
ends nearer the true probe than the nominal one, and writes it into its reconstruction (the
evaluation's model errors use it). Off, a probe the PINN learned stays frozen."""

from __future__ import annotations

import numpy as np
from conftest import small_study_dict


def _pinn(tmp_path, **training):
    from ptycho.config import StudyConfig
    from ptycho.data.generate import simulate_cell
    from ptycho.training.fit import train_arm

    d = small_study_dict(arms=["pinn", "adapted"], gridsizes=[2],
                         errors={"probe": {"kind": "defocus", "levels": [0.25]}})
    d["scales"]["scaled"]["training"] = {
        "epochs": 5, "batch_size": 16, "learning_rate": 0.003, "filters": 8, "depth": 2,
        "patience": 100, "plateau_patience": 100, **training}
    study = StudyConfig.from_dict(d)
    tr, te = tmp_path / "train.h5", tmp_path / "test.h5"
    simulate_cell(study, "scaled", "1e5", "dense", tr, te, error_level="probe25")
    out = {k: tmp_path / f"pinn.{k}" for k in ("keras", "json", "csv", "png")}
    train_arm("pinn_g2", tr, study, "scaled", out["keras"], out["json"], out["csv"], out["png"],
              threads=1)
    return study, te, out


def test_trainable_probe_swap_predicts_the_same_and_freeze():
    from ptycho.models.backbones import BackboneSpec
    from ptycho.models.pinn import build_pinn, learned_probe
    from ptycho.training.adapt import freeze_learned_probe, with_trainable_probe

    rng = np.random.default_rng(0)
    probe = (rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))).astype(np.complex64)
    spec = BackboneSpec(kind="cnn", filters=4, depth=2)
    model = build_pinn(16, 1, 1e4, probe, 1.0, spec)
    model.get_layer("physics").log_scale.assign(0.3)
    x = rng.uniform(0, 50, size=(2, 16, 16, 1)).astype(np.float32)
    swapped, start = with_trainable_probe(model, 2.0)
    np.testing.assert_array_equal(start, probe)
    np.testing.assert_allclose(swapped.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5)
    layer = swapped.get_layer("physics")
    assert layer.train_probe and layer.probe_rate == 2.0
    np.testing.assert_array_equal(learned_probe(swapped), probe)
    assert not freeze_learned_probe(model)  # a fixed probe: nothing to freeze
    assert freeze_learned_probe(swapped)
    names = sorted(w.name for w in layer.trainable_weights)
    assert names == ["log_scale"]


def test_adapted_arm_refines_the_probe_nearer_the_truth(tmp_path):
    from ptycho.config import AdaptationConfig
    from ptycho.evaluation.evaluate import model_errors
    from ptycho.reconstruct.inference import reconstruct_network
    from ptycho.reconstruct.io import read_reconstruction, write_reconstruction
    from ptycho.training.adapt import adapt_arm

    study, te, pinn = _pinn(tmp_path)
    assert study.to_dict()["scales"]["scaled"]["adaptation"].get("refine_probe") is None
    cfg = AdaptationConfig(epochs=10, learning_rate=0.003, refine_probe=True,
                           probe_learning_rate_scale=10.0)
    ad = {k: tmp_path / f"adapted.{k}" for k in ("keras", "json", "csv", "png")}
    bundle = adapt_arm(pinn["keras"], pinn["json"], te, cfg, 16, 7, ad["keras"], ad["json"],
                       ad["csv"], ad["png"], threads=1)
    assert bundle["adaptation"]["refine_probe"] is True
    assert bundle["refined_probe"]["start"] == "the nominal probe"
    rec = reconstruct_network(ad["keras"], ad["json"], te, batch_size=64)
    write_reconstruction(tmp_path / "recon.h5", rec)
    back = read_reconstruction(tmp_path / "recon.h5")
    assert back.arm == "adapted_g2" and back.probe.shape == (1, 16, 16)
    me = model_errors(back, te)
    assert me["refined"] == ["probe"]
    assert abs(me["nominal_probe_error"] - 0.25) < 1e-3
    # measured 0.250 -> 0.221 (PINN 5 epochs, adaptation 10 epochs at 0.003, rate 10; seeded)
    assert me["probe_error"] < 0.95 * me["nominal_probe_error"]
    assert abs(me["probe_change"] - bundle["refined_probe"]["probe_change"]) < 1e-4
