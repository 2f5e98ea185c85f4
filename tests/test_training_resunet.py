"""The residual U-Net backbone in training: batch-size independence, bit-identical reloads, the
fairness of both arms (a PINN never reads a label, the baseline reads only its train patches) and
the adapted arm, on models trained once for this module (a file of its own so that the test
workers run it beside test_training.py)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from test_training import (
    RESUNET,
    cell,  # noqa: F401 - the module-scoped cell fixture
    outputs,
    tiny_study,
    train,
)
from test_training import (
    test_predictions_do_not_depend_on_batch_size as batch_size_body,
)
from test_training import (
    test_saved_bundle_reloads_with_identical_predictions as reload_body,
)

from ptycho.data.dataset import Dataset
from ptycho.errors import TrainingError


@pytest.fixture(scope="module")
def trained_resunet(cell, tmp_path_factory):  # noqa: F811
    """pinn_g2 and baseline with the residual U-Net backbone (short: shapes, bundles, fairness)."""
    _, train_path, _ = cell
    root = tmp_path_factory.mktemp("resunet")
    st = tiny_study(**RESUNET)
    return {arm: train(st, train_path, root, arm) for arm in ("pinn_g2", "baseline")}



@pytest.mark.parametrize("arm", ["pinn_g2", "baseline"])
def test_resunet_predictions_do_not_depend_on_batch_size(request, cell, arm):  # noqa: F811
    batch_size_body(request, cell, arm, "resunet")


def test_resunet_bundle_reloads_with_identical_predictions(request, cell):  # noqa: F811
    reload_body(request, cell, "resunet")


# ----------------------------------------------------------------------------- fairness
def _weights(path):
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def _with_object(src, dst, transform):
    import shutil

    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        obj = f["object"][()]
        f["object"][...] = transform(obj).astype(np.complex64)
    return dst


def test_pinn_never_reads_a_label_and_the_baseline_only_train_patches(
        trained_resunet, cell, tmp_path):  # noqa: F811
    """Same seed and data, other ground truth: a PINN (resunet) trains to bit-identical weights
    whatever /object holds; the supervised baseline trains to identical weights when the object
    changes outside the train patches and to other weights when it changes under them. The
    reference weights are those of the ``trained_resunet`` models (same settings, true object)."""
    from ptycho.physics.forward import SUBPIXEL_MARGIN, patch_corners

    _, train_path, _ = cell
    st = tiny_study(**RESUNET)
    rng = np.random.default_rng(5)
    garbage = _with_object(train_path, tmp_path / "garbage.h5",
                           lambda o: rng.uniform(0.1, 1, o.shape) * np.exp(1j * rng.normal(size=o.shape)))
    with Dataset(train_path) as ds:
        pos, N, shape = ds.positions, ds.N, ds.object_shape
    # a label at a sub-pixel position is Fourier-interpolated from the patch and a
    # SUBPIXEL_MARGIN-pixel context around it (as the simulated counts are)
    m = SUBPIXEL_MARGIN + 1
    covered = np.zeros(shape, bool)
    for y, x in patch_corners(pos, N):
        covered[max(y - m, 0) : y + N + m, max(x - m, 0) : x + N + m] = True
    assert not covered.all()
    outside = _with_object(train_path, tmp_path / "outside.h5",
                           lambda o: np.where(covered, o, 0.2 * np.exp(2j)))
    inside = _with_object(train_path, tmp_path / "inside.h5",
                          lambda o: np.where(covered, np.conj(o), o))
    w = {(arm, 0): _weights(trained_resunet[arm][1]["model_path"])
         for arm in ("pinn_g2", "baseline")}
    for arm, files in (("pinn_g2", (garbage,)), ("baseline", (outside, inside))):
        for k, path in enumerate(files, start=1):
            _, out = train(st, path, tmp_path / f"{arm}{k}", arm)
            w[arm, k] = _weights(out["model_path"])
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(a, b))
    assert same(w["pinn_g2", 0], w["pinn_g2", 1])
    assert same(w["baseline", 0], w["baseline", 1])
    assert not same(w["baseline", 0], w["baseline", 2])


def test_adapted_arm_fits_the_test_counts_without_labels(trained_resunet, cell,  # noqa: F811
                                                         tmp_path):
    """The adapted arm fine-tunes its PINN on the test split's counts alone: bit-identical weights
    with or without the ground truth in the file, a check loss that does not rise, its own arm id,
    and the adaptation time counted in the reconstruction's wall time."""
    from ptycho.config import AdaptationConfig
    from ptycho.reconstruct.inference import reconstruct_with_study
    from ptycho.training.adapt import adapt_arm

    _, _, test_path = cell
    _, src = trained_resunet["pinn_g2"]
    no_truth = tmp_path / "no_truth.h5"
    import shutil

    shutil.copy(test_path, no_truth)
    with h5py.File(no_truth, "a") as f:
        del f["object"]
    # 4 patterns per step (one group of 4) and the encoder fixed: the options of
    # ``scales.<s>.adaptation`` (the default 16 patterns, all layers, runs in test_workflow)
    cfg = AdaptationConfig(epochs=1, learning_rate=1e-3, batch_size=4, freeze_encoder=True)
    outs = {}
    for name, path in (("with", test_path), ("without", no_truth)):
        o = outputs(tmp_path / name, "adapted_g2")
        outs[name] = (adapt_arm(src["model_path"], src["bundle_path"], path, cfg,
                                cfg.patterns_per_step(16), 11, o["model_path"], o["bundle_path"],
                                o["history_path"], o["curve_path"]), o)
    bundle, o = outs["with"]
    assert bundle["arm"] == "adapted_g2" and bundle["source_arm"] == "pinn_g2"
    assert bundle["adaptation"]["labels_used"] is False and bundle["final_loss"] <= bundle["initial_loss"]
    assert all(np.array_equal(a, b) for a, b in zip(_weights(o["model_path"]),
                                                    _weights(outs["without"][1]["model_path"])))
    _check_frozen_encoder(bundle, src["model_path"], o["model_path"], test_path)
    rec = reconstruct_with_study(o["model_path"], o["bundle_path"], test_path, tiny_study(),
                                 "scaled", "dense", tmp_path / "rec.h5",
                                 extra_time_s=bundle["fit_time_s"])
    assert rec.arm == "adapted_g2"
    assert rec.wall_time_s == pytest.approx(rec.info["inference_s"] + bundle["fit_time_s"])
    with pytest.raises(TrainingError, match="only a PINN can be adapted"):
        _, ob = trained_resunet["baseline"]
        adapt_arm(ob["model_path"], ob["bundle_path"], test_path, cfg, 16, 11,
                  *outputs(tmp_path / "x", "b").values())


def _check_frozen_encoder(bundle, source_model, adapted_model, test_path):
    """4 patterns per step = one group per step; the encoder's weights bit-identical to the source
    PINN's while the rest moves; the saved model an ordinary trainable PINN."""
    import keras

    from ptycho.models.backbones import count_parameters
    from ptycho.training.adapt import is_encoder

    info = bundle["adaptation"]
    assert info["batch_size_patterns"] == 4 and info["freeze_encoder"] is True
    with Dataset(test_path, require_object=False) as ds:
        groups = -(-ds.n // 4)  # an epoch draws 1/4 of the n groups (one per position)
    assert info["groups_per_epoch"] == groups
    assert info["steps_per_epoch"] == groups  # one group per step; 16 patterns: -(-groups // 4)
    before = keras.saving.load_model(source_model, compile=False)
    after = keras.saving.load_model(adapted_model, compile=False)
    assert "stem" in info["frozen_layers"] and all(is_encoder(n) for n in info["frozen_layers"])
    assert info["trainable_parameters"] < count_parameters(after)
    moved = {}
    for lb, la in zip(before.layers, after.layers):
        assert la.trainable
        if lb.weights:
            moved[lb.name] = not all(np.array_equal(np.asarray(a), np.asarray(b))
                                     for a, b in zip(lb.weights, la.weights))
    assert not any(v for k, v in moved.items() if is_encoder(k))
    assert any(v for k, v in moved.items() if k.startswith(("mid", "dec", "head", "amp", "phase")))


def test_api_passes_the_adaptation_settings(monkeypatch, tmp_path):
    """``ptycho.api.adapt_arm`` hands the scale's adaptation settings to the adaptation: its own
    ``batch_size`` when set, else the scale's training batch."""
    import dataclasses

    import ptycho.training.adapt as adapt_mod
    from ptycho import api

    seen = []

    def fake(model, bundle, test, cfg, batch_size, seed, *paths, **kw):
        seen.append((cfg, batch_size, kw["expected_arm"]))
        return {"arm": "adapted_g2"}

    monkeypatch.setattr(adapt_mod, "adapt_arm", fake)
    st = tiny_study(**RESUNET)
    sc = st.scale("scaled")
    for setting, expected in ((None, sc.training.batch_size), (4, 4)):
        ad = dataclasses.replace(sc.adaptation, batch_size=setting, freeze_encoder=True)
        study = dataclasses.replace(st, scales={**st.scales,
                                                "scaled": dataclasses.replace(sc, adaptation=ad)})
        api.adapt_arm(study, "scaled", (tmp_path / "m.keras", tmp_path / "b.json"),
                      tmp_path / "test.h5", tmp_path / "out")
        cfg, batch, _ = seen[-1]
        assert batch == expected and cfg.freeze_encoder is True
