"""Train one arm of one grid cell and write its model bundle (:mod:`ptycho.models.bundle`:
model.keras, bundle.json, history.csv and curve.png, all written atomically, and only after a
successful fit).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ptycho.config import StudyConfig, arm_gridsize
from ptycho.data.dataset import Dataset
from ptycho.data.grouping import cell_labels, group_table, grouping_rng
from ptycho.errors import ConfigError, DatasetError, TrainingError
from ptycho.models.bundle import BUNDLE_VERSION, write_bundle
from ptycho.models.runtime import configure_tensorflow, package_versions, peak_gpu_mb
from ptycho.progress import job_label
from ptycho.rng import int_seed, replicate_labels, rng_for

log = logging.getLogger(__name__)

TRAINABLE_ARMS = ("pinn_g1", "pinn_g2", "baseline")
MIN_BATCHES_PER_EPOCH = 8


def training_streams(study: StudyConfig, arm_id: str, dose_lbl: str, view: str,
                     replicate: int = 0) -> dict:
    """The seeded streams of one arm's training in one cell replicate: ``tensorflow`` (int seed
    of Keras' initialisation and dropout), ``grouping``, ``validation`` (the same held-out items
    for every arm of a cell replicate: no arm label) and ``shuffle`` (Generators). Replicate
    k >= 1 adds its label to every stream (``ptycho.rng.replicate_labels``); replicate 0 draws
    the streams of a study without replicates."""
    rep = replicate_labels(replicate)
    seeds = study.seeds
    return {
        "tensorflow": int_seed(seeds.training, arm_id, dose_lbl, view, *rep),
        "grouping": grouping_rng(seeds.grouping, "train", dose_lbl, view, replicate),
        "validation": rng_for(seeds.training, "validation", dose_lbl, view, *rep),
        "shuffle": rng_for(seeds.training, "shuffle", arm_id, dose_lbl, view, *rep),
        "labels": [arm_id, dose_lbl, view, *rep],
    }


def train_arm(arm_id: str, train_path, study: StudyConfig, scale_name: str, model_path,
              bundle_path, history_path, curve_path, threads: int = 1, replicate: int = 0) -> dict:
    """Train ``arm_id`` (pinn_g1, pinn_g2 or baseline) on the train split ``train_path`` of
    replicate ``replicate`` (its seeds: :func:`training_streams`; the file must be that replicate).

    Returns the bundle dictionary (also written to ``bundle_path``). Raises DatasetError for an empty
    file, NaN/inf/negative counts or (baseline) a file without ground truth, ConfigError for an
    unknown arm or a file of another N than the scale, TrainingError if the loss diverges; in every
    failure no output file is left.
    """
    if arm_id not in TRAINABLE_ARMS:
        raise ConfigError(f"cannot train arm '{arm_id}'; expected one of {TRAINABLE_ARMS}")
    t_start = time.perf_counter()
    scale = study.scale(scale_name)
    tc = scale.training
    gridsize = arm_gridsize(arm_id)
    supervised = arm_id == "baseline"
    train_path = Path(train_path)

    try:
        ds = Dataset(train_path, require_object=supervised)
    except DatasetError as exc:
        if supervised and "ground truth" in str(exc):
            raise DatasetError(f"{exc}; the supervised baseline trains on ground-truth patches") from exc
        raise
    with ds:
        if ds.n == 0:
            raise DatasetError(f"{train_path}: no diffraction patterns; nothing to train on")
        if ds.N != scale.N:
            raise ConfigError(f"{train_path}: patterns are {ds.N} x {ds.N} but scale '{scale_name}' "
                              f"has N = {scale.N}")
        ds.check_positions()
        if ds.replicate != int(replicate):
            raise ConfigError(f"{train_path}: the file is replicate {ds.replicate}, but replicate "
                              f"{replicate} is to be trained")
        configure_tensorflow(threads)
        import keras

        from ptycho.data.batches import BatchSource, count_statistics, input_norm, split_validation

        stats = count_statistics(ds, scale.chunk_size)
        norm = input_norm(stats["mean_counts_per_pixel"], train_path)
        dose_lbl, view = cell_labels(ds)
        streams = training_streams(study, arm_id, dose_lbl, view, replicate)
        seed = streams["tensorflow"]
        keras.utils.set_random_seed(seed)
        positions = ds.positions
        N = ds.N
        table = group_table(positions, gridsize, study.neighbours, N, streams["grouping"])
        # The same validation items for every arm of a cell (no arm label in the stream).
        tr_idx, val_idx = split_validation(len(table), tc.validation_fraction,
                                           streams["validation"])
        shuffle_rng = streams["shuffle"]
        obj = ds.object if supervised else None
        kind = "baseline" if supervised else "pinn"
        # one group per position, but per epoch only 1/C of them, and batch_size counts patterns:
        # a batch holds batch_size / C groups, so every gridsize sees the same patterns per step,
        # steps per epoch and compute; at least MIN_BATCHES_PER_EPOCH batches where the split is
        # small, so that a sparse cell still gets optimisation steps
        groups_per_batch = max(1, tc.batch_size // table.C)
        per_epoch = min(len(tr_idx), max(math.ceil(len(tr_idx) / table.C),
                                         MIN_BATCHES_PER_EPOCH * groups_per_batch))
        train_src = BatchSource(ds, table, tr_idx, groups_per_batch, kind, shuffle_rng, obj,
                                positions, per_epoch=per_epoch)
        val_src = BatchSource(ds, table, val_idx, groups_per_batch, kind, None, obj, positions)

        from ptycho.models.pinn import mean_transmission

        a0 = mean_transmission(stats["mean_counts_per_pattern"], ds.dose)
        model, loss_name = _build(arm_id, ds, gridsize, norm, tc, a0, len(train_src))
        # e.g. "pinn_g1 1e5_dense_r0", "pinn_g1 1e5_dense_probe25_r0" at an error level
        label = job_label(arm_id, dose_lbl, view, replicate, (ds.errors or {}).get("label"))
        from ptycho.training import loop

        initial_loss = loop.evaluate(model, val_src)
        log.info("%s: training on %s, %d train / %d validation items, norm %.4g, initial val "
                 "loss %.6g, at most %d epochs", label, train_path, len(tr_idx), len(val_idx),
                 norm, initial_loss, tc.epochs)
        if not math.isfinite(initial_loss):
            raise TrainingError(f"{label}: initial loss is {initial_loss}; no model was written")

        from ptycho.models.backbones import count_parameters
        from ptycho.training.callbacks import EpochRecorder, NaNGuard

        recorder = EpochRecorder(label, tc.epochs, may_stop_early=True)
        early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=tc.patience,
                                              restore_best_weights=True)
        callbacks = [NaNGuard(label), recorder, early]
        if tc.schedule == "plateau":
            callbacks.insert(2, keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=tc.plateau_patience, min_lr=1e-6))
        t_fit = time.perf_counter()
        loop.fit(model, train_src, val_src, tc.epochs, callbacks)  # the source shuffles, seeded
        fit_time = time.perf_counter() - t_fit
        final_loss = loop.evaluate(model, val_src)
        rows = recorder.rows
        best = int(np.nanargmin([r["val_loss"] for r in rows])) + 1 if rows else 0

        bundle = {
            "bundle_version": BUNDLE_VERSION,
            "arm": arm_id,
            "gridsize": gridsize,
            "channels": gridsize * gridsize,
            "N": N,
            "normalisation": {"input": "sqrt(counts) / norm", "norm": norm,
                              "applied_in": "model layer 'amplitude_input'", **stats},
            "amplitude_init": a0,
            "dose": ds.dose,
            "dose_label": dose_lbl,
            "overlap_view": view,
            "replicate": int(replicate),
            "loss": loss_name,
            "backbone": {"kind": tc.backbone, "filters": tc.filters, "depth": tc.depth,
                         "support": tc.support, "ensemble": int(tc.ensemble),
                         "parameters": count_parameters(model)},
            "study": study.study,
            "scale": scale_name,
            "config": {"training": _training_record(tc), "neighbours": study.neighbours,
                       "object_shape": list(ds.object_shape)},
            "seeds": {"training": study.seeds.training, "grouping": study.seeds.grouping,
                      "tensorflow": seed, "labels": streams["labels"]},
            "versions": package_versions(),
            "train_path": str(train_path),
            "n_patterns": ds.n,
            "n_train": len(tr_idx),
            "items_per_epoch": per_epoch,
            "groups_per_batch": groups_per_batch,
            "n_val": len(val_idx),
            "epochs_run": len(rows),
            "best_epoch": best,
            "initial_loss": initial_loss,
            "final_loss": final_loss,
            "fit_time_s": fit_time,
            "epoch_times_s": [round(t, 3) for t in recorder.epoch_times],
            "threads": int(threads),
            "peak_gpu_mb": peak_gpu_mb(),
        }
        if getattr(tc, "train_probe", False) and not supervised:
            from ptycho.models.pinn import learned_probe
            from ptycho.physics.errors import relative_probe_error

            learned = learned_probe(model)  # stored in model.keras (the physics layer's weights)
            bundle["trained_probe"] = {
                "rate": float(tc.probe_learning_rate_scale),
                "stored_in": "model.keras, layer 'physics' (probe_re/probe_im + change)",
                "probe_change": relative_probe_error(learned, ds.probe),
            }
        bundle["wall_time_s"] = time.perf_counter() - t_start
        write_bundle(model, bundle, rows, model_path, bundle_path, history_path, curve_path)
        log.info("%s: %d epochs in %.1f s, val loss %.6g -> %.6g", label, len(rows), fit_time,
                 initial_loss, final_loss)
        return bundle


def _training_record(tc) -> dict:
    """The training settings a bundle records (a fixed probe's unused settings left out, so a
    study without a trainable probe records what it always did)."""
    rec = asdict(tc)
    if not rec.get("train_probe"):
        rec.pop("train_probe", None)
        rec.pop("probe_learning_rate_scale", None)
    return rec


def _build(arm_id: str, ds: Dataset, gridsize: int, norm: float, tc, amplitude_init: float = 0.5,
           steps_per_epoch: int = 1):
    """The arm's model, compiled with Adam at the config's learning rate (a cosine schedule when
    ``tc.schedule`` is cosine: ``steps_per_epoch`` sizes its warm-up and decay; each step's
    gradient clipped to the global norm ``tc.clip_norm`` when set), and the loss name."""
    import keras

    from ptycho.models.spec import BackboneSpec

    spec = BackboneSpec.from_training(tc)
    optimizer = keras.optimizers.Adam(learning_rate(tc, steps_per_epoch, arm_id),
                                      global_clipnorm=tc.clip_norm)
    if arm_id == "baseline":
        from ptycho.models.baseline import SupportMAE, build_baseline

        model = build_baseline(ds.N, norm, spec, amplitude_init)
        S = spec.output_size(ds.N)
        offset_free = tc.supervised_phase == "offset_free"
        model.compile(optimizer=optimizer, loss=SupportMAE(ds.N, S, phase_offset_free=offset_free))
        where = "the patch" if S == ds.N else f"the centred {S} x {S} support"
        phase = "phase modulo its mean, " if offset_free else ""
        return model, f"mae(amplitude, {phase}phase) over {where}"
    from ptycho.models.physics_layer import PoissonNLL
    from ptycho.models.pinn import build_pinn

    extra = ({"train_probe": True, "probe_rate": float(tc.probe_learning_rate_scale)}
             if getattr(tc, "train_probe", False) else {})  # a fixed probe: the model as always
    model = build_pinn(ds.N, gridsize, ds.dose, ds.probe, norm, spec, amplitude_init,
                       align_phases=tc.align_group_phases, **extra)
    model.compile(optimizer=optimizer, loss=PoissonNLL())
    return model, "poisson_nll (shifted by the saturated NLL, per pixel)"


def learning_rate(tc, steps_per_epoch: int, arm_id: str = "pinn_g1"):
    """The learning rate of an arm under a ``TrainingConfig``: a constant (``plateau``:
    ReduceLROnPlateau halves it during training) or, for ``cosine``, ``cosine_schedule``."""
    peak = tc.rate(arm_id)
    if tc.schedule == "plateau":
        return peak
    return cosine_schedule(peak, tc.epochs, steps_per_epoch)


def cosine_schedule(peak: float, epochs: int, steps_per_epoch: int):
    """A linear warm-up from 0 to ``peak`` over the first epoch, then a cosine decay to 0 at the
    last step (Keras ``CosineDecay``)."""
    import keras

    total = max(2, int(epochs) * int(steps_per_epoch))
    warmup = min(int(steps_per_epoch), total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=total - warmup, alpha=0.0,
        warmup_target=float(peak), warmup_steps=warmup)
