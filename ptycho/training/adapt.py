"""The ``adapted`` arm: a trained PINN fine-tuned, without labels, on the counts of the scan it then
reconstructs (self-supervised test-time adaptation).

A PINN is trained on counts alone, so nothing stops it from also fitting the test scan's own counts
before reconstructing them: the same Poisson likelihood, the same physics layer and known probe, the
same groups that inference stitches (for gridsize 2 the overlap constraint then couples neighbouring
test patterns, as in ptychography). It never sees a label, and it is its own arm (``adapted_g<g>``,
never mixed into ``pinn_g<g>``): the adaptation is part of its reconstruction time, like an
iterative solver's iterations.

The loss is watched on a fixed, seeded tenth of the scan's groups (the "check" subset, fitted like
the rest: there is nothing held out, and nothing needs to be -- the objective is the fit to this
scan); the weights of the epoch with the lowest check loss are kept, the unadapted PINN's included
(``best_epoch`` 0), so a step size that makes the fit worse cannot make the arm worse than its
start.

With ``refine_probe`` the physics layer's probe is trainable during the adaptation, as in a PINN
trained with ``train_probe`` (``ptycho.models.physics_layer.PoissonForward``): it starts at the
nominal probe, or at the probe the PINN learned when it trained one, and moves at
``probe_learning_rate_scale`` times the network's rate. The adapted model then carries the refined
probe, and inference writes it into the arm's reconstruction (``/probe``). Without it, a probe the
PINN learned stays as it was (its change is frozen). The scan positions are never refined here.

Outputs (written atomically, only after a successful adaptation): the adapted ``model.keras``, a
``bundle.json`` (arm ``adapted_g<g>``, the source bundle, the adaptation settings, check loss
before and after, the kept epoch, wall time), ``history.csv`` (epoch, loss = running mean over the
epoch's batches, val_loss = check loss after the epoch, lr) and the loss curve.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path

import numpy as np

from ptycho.config import AdaptationConfig
from ptycho.data.batches import BatchSource, count_statistics
from ptycho.data.dataset import Dataset
from ptycho.data.grouping import cell_labels, group_table, grouping_rng
from ptycho.errors import DatasetError, TrainingError
from ptycho.progress import job_label
from ptycho.rng import int_seed, replicate_labels, rng_for

log = logging.getLogger(__name__)

ADAPT_CHECK_FRACTION = 0.1  # groups whose loss is compared before and after the adaptation


def adapted_arm_id(source_arm: str) -> str:
    """``pinn_g2`` -> ``adapted_g2``."""
    if not source_arm.startswith("pinn_g"):
        raise TrainingError(f"only a PINN can be adapted without labels, got arm '{source_arm}'")
    return "adapted_g" + source_arm[len("pinn_g"):]


def is_encoder(layer_name: str) -> bool:
    """A layer of the backbone's encoder: the residual U-Net's ``stem`` and ``enc<i>_*`` layers,
    the cnn's ``enc<i>_*`` layers, of any ensemble member (``m<k>_`` before the name)."""
    m = re.match(r"m\d+_", layer_name)  # an ensemble member's prefix (member_prefix)
    name = layer_name[m.end():] if m else layer_name
    return name == "stem" or (name.startswith("enc") and name[3:4].isdigit())


def with_trainable_probe(model, rate: float):
    """The PINN ``model`` with its physics layer replaced by one whose probe is trainable
    (``PoissonForward(train_probe=True, probe_rate=rate)``), starting from the probe ``model``
    uses: its learned probe (at the nominal probe's power) or its fixed one. The learned
    log-scale is carried over, so the new model predicts exactly what ``model`` did. Returns
    (model, starting probe (N, N) complex64)."""
    import keras

    from ptycho.models.physics_layer import PoissonForward, trained_probe

    old = model.get_layer("physics")
    start = trained_probe(old)
    if start is None:
        start = (np.asarray(old.probe_re) + 1j * np.asarray(old.probe_im)).astype(np.complex64)
    re, im = model.get_layer("object_patches").output
    physics = PoissonForward(old.N, old.dose, start, train_probe=True, probe_rate=float(rate),
                             name="physics")
    lam = physics([re, im])
    physics.log_scale.assign(old.log_scale)
    return keras.Model(model.inputs, lam, name=model.name), start


def freeze_learned_probe(model) -> bool:
    """Keep the probe a PINN learned (``train_probe``) fixed: its change weights stop training.
    True when there was one."""
    layer = model.get_layer("physics")
    if not getattr(layer, "train_probe", False):
        return False
    layer.probe_delta_re.trainable = False
    layer.probe_delta_im.trainable = False
    return True


def adapt_arm(model_path, bundle_path, test_path, cfg: AdaptationConfig, batch_size: int,
              seed: int, out_model, out_bundle, out_history, out_curve, threads: int = 1,
              expected_arm: str | None = None, replicate: int = 0) -> dict:
    """Fine-tune the PINN of ``model_path``/``bundle_path`` on the counts of ``test_path`` for
    ``cfg.epochs`` epochs (Adam, warmed up to ``cfg.learning_rate`` over one epoch and decayed to
    zero by a cosine; batches of ``batch_size`` patterns, an
    epoch draws 1/C of the groups as in training) and write the adapted bundle. Returns it.
    ``replicate``: the cell replicate of ``test_path`` (k >= 1 adds its label to every stream,
    as in training and in inference's grouping).

    Raises TrainingError for a source that is not a PINN or does not match the data (N, dose),
    DatasetError for unreadable data or NaN/inf/negative counts; no output is left on failure.
    """
    from ptycho.models.bundle import load_model, read_bundle, write_bundle
    from ptycho.models.runtime import configure_tensorflow, package_versions
    from ptycho.training.fit import cosine_schedule

    t0 = time.perf_counter()
    source = read_bundle(bundle_path, expected_arm)
    arm = adapted_arm_id(str(source["arm"]))
    g, N = int(source["gridsize"]), int(source["N"])
    test_path = Path(test_path)
    with Dataset(test_path, require_object=False) as ds:
        if ds.N != N:
            raise TrainingError(f"{bundle_path}: model trained on N = {N} patterns, but {test_path} "
                                f"holds {ds.N} x {ds.N} patterns")
        if not math.isclose(ds.dose, float(source["dose"]), rel_tol=1e-6):
            raise TrainingError(f"{bundle_path}: the PINN's physics layer is at dose "
                                f"{source['dose']:g}, {test_path} at {ds.dose:g}")
        if ds.n == 0:
            raise DatasetError(f"{test_path}: no diffraction patterns to adapt to")
        if ds.replicate != int(replicate):
            raise TrainingError(f"{test_path}: the file is replicate {ds.replicate}, but replicate "
                                f"{replicate} is to be adapted")
        count_statistics(ds)
        configure_tensorflow(threads)
        import keras

        from ptycho.models.backbones import count_parameters
        from ptycho.models.physics_layer import PoissonNLL
        from ptycho.training import loop
        from ptycho.training.callbacks import EpochRecorder, KeepBest, NaNGuard

        dose_lbl, view = cell_labels(ds)
        rep = replicate_labels(replicate)
        tf_seed = int_seed(seed, arm, dose_lbl, view, *rep)
        keras.utils.set_random_seed(tf_seed)
        model = load_model(model_path, source, bundle_path)
        refine_probe = bool(getattr(cfg, "refine_probe", False))
        probe_rate = float(getattr(cfg, "probe_learning_rate_scale", 1.0))
        start_probe = None
        if refine_probe:
            model, start_probe = with_trainable_probe(model, probe_rate)
        else:
            freeze_learned_probe(model)
        frozen = [layer for layer in model.layers if cfg.freeze_encoder and is_encoder(layer.name)]
        for layer in frozen:
            layer.trainable = False
        trainable = count_parameters(model)  # trainable weights only
        # the groups inference stitches (same grouping stream), so the adapted model is fitted to
        # exactly the inputs it then reconstructs
        table = group_table(ds.positions, g, int(source["config"]["neighbours"]), N,
                            grouping_rng(int(source["seeds"]["grouping"]), "test", dose_lbl, view,
                                         replicate))
        per_batch = max(1, batch_size // table.C)
        per_epoch = max(1, math.ceil(len(table) / table.C))
        rng = rng_for(seed, "adapt", arm, dose_lbl, view, *rep)
        everything = np.arange(len(table))
        train = BatchSource(ds, table, everything, per_batch, "pinn", rng, per_epoch=per_epoch)
        # a fresh Adam at full step size would first knock the trained weights off (its first
        # steps are ~lr per weight whatever the gradient): warm up over one epoch, then decay to 0
        schedule = cosine_schedule(cfg.learning_rate, cfg.epochs, len(train))
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=PoissonNLL())
        n_check = max(1, round(ADAPT_CHECK_FRACTION * len(table)))
        check = BatchSource(ds, table, np.sort(rng.permutation(len(table))[:n_check]),
                            per_batch, "pinn")
        initial_loss = loop.evaluate(model, check)
        # e.g. "adapted_g2 1e5_dense_r0", "adapted_g2 1e5_dense_probe25_r0" at an error level
        label = job_label(arm, dose_lbl, view, replicate, (ds.errors or {}).get("label"))
        log.info("%s: adapting %s to the counts of %s, %d epochs of %d steps, learning rate "
                 "from 0 up to %.3g over the first %d steps, then a cosine decay to 0 over %d, "
                 "check loss %.6g", label, source["arm"], test_path, cfg.epochs, len(train),
                 cfg.learning_rate, schedule.warmup_steps, schedule.decay_steps, initial_loss)
        recorder = EpochRecorder(label, cfg.epochs)
        keep = KeepBest(initial_loss)
        t_fit = time.perf_counter()
        loop.fit(model, train, check, cfg.epochs, [NaNGuard(label), recorder, keep])
        fit_time = time.perf_counter() - t_fit
        final_loss = loop.evaluate(model, check)
        bundle = dict(source)
        bundle.update({
            "arm": arm,
            "source_arm": source["arm"],
            "source_bundle": str(bundle_path),
            "source_train_path": source.get("train_path"),
            "adaptation": {"epochs": int(cfg.epochs), "learning_rate": float(cfg.learning_rate),
                           "schedule": "one warm-up epoch, cosine decay to 0",
                           "batch_size_patterns": int(batch_size), "groups_per_epoch": per_epoch,
                           "steps_per_epoch": len(train),
                           "freeze_encoder": bool(cfg.freeze_encoder),
                           "frozen_layers": [layer.name for layer in frozen],
                           "trainable_parameters": trainable,
                           "data": str(test_path), "labels_used": False,
                           "check_groups": n_check},
            "seeds": {**source["seeds"], "adaptation": int(seed), "adaptation_tensorflow": tf_seed},
            "versions": package_versions(),
            "epochs_run": len(recorder.rows),
            "best_epoch": keep.best_epoch,
            "initial_loss": initial_loss,
            "final_loss": final_loss,
            "fit_time_s": fit_time,
            "epoch_times_s": [round(t, 3) for t in recorder.epoch_times],
            "threads": int(threads),
        })
        if refine_probe:
            from ptycho.models.pinn import learned_probe
            from ptycho.physics.errors import relative_probe_error

            refined = learned_probe(model)
            bundle["adaptation"].update(refine_probe=True, probe_learning_rate_scale=probe_rate)
            bundle["refined_probe"] = {
                "rate": probe_rate,
                "start": "the PINN's learned probe" if source.get("trained_probe")
                else "the nominal probe",
                "stored_in": "model.keras, layer 'physics' (probe_re/probe_im + change)",
                "probe_change_adaptation": relative_probe_error(refined, start_probe),
                "probe_change": relative_probe_error(refined, ds.probe),
            }
        bundle["wall_time_s"] = time.perf_counter() - t0
        if not math.isfinite(final_loss):
            raise TrainingError(f"{label}: loss after adaptation is {final_loss}; no model written")
        for layer in frozen:  # the saved model is an ordinary, fully trainable PINN
            layer.trainable = True
        write_bundle(model, bundle, recorder.rows, out_model, out_bundle, out_history, out_curve)
        log.info("%s: %d epochs in %.1f s, loss on %d check groups %.6g -> %.6g", label,
                 len(recorder.rows), fit_time, n_check, initial_loss, final_loss)
        return json.loads(json.dumps(bundle))


__all__ = ["adapt_arm", "adapted_arm_id", "freeze_learned_probe", "with_trainable_probe"]
