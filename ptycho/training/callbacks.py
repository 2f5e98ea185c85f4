"""Training callbacks: a NaN guard and an epoch recorder (history with the learning rate)."""

from __future__ import annotations

import logging
import math
import time

import keras

from ptycho.errors import TrainingError
from ptycho.progress import eta

log = logging.getLogger(__name__)


class NaNGuard(keras.callbacks.Callback):
    """Stop training with ``TrainingError`` as soon as a batch loss is NaN or infinite.

    The error propagates out of ``fit``; since bundles are written only after a successful fit, a
    diverged run leaves no model file.
    """

    def __init__(self, label: str):
        super().__init__()
        self.label = label
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise TrainingError(f"{self.label}: loss became {float(loss)} at epoch {self.epoch + 1}, "
                                f"batch {batch + 1}; no model was written")

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):
            v = (logs or {}).get(key)
            if v is not None and not math.isfinite(float(v)):
                raise TrainingError(f"{self.label}: {key} became {float(v)} at epoch {epoch + 1}; "
                                    "no model was written")


class EpochRecorder(keras.callbacks.Callback):
    """Rows (epoch, loss, val_loss, lr) per epoch, logged as they come.

    ``lr`` is the learning rate the epoch ran with (read before ReduceLROnPlateau acts on it); under
    a schedule, the rate of the epoch's first step. Each epoch's log line reads
    ``<label> epoch k/K: loss .. val_loss .. lr .. (t s, ETA ..)``, where ``K`` is ``epochs`` and,
    under a schedule, lr gives the rates of the epoch's first and last steps (and the highest
    between them where a warm-up ends inside the epoch: ``0 -> 0.001 -> 2e-05``); the ETA says
    "at most" when ``may_stop_early`` (early stopping).
    """

    def __init__(self, label: str, epochs: int | None = None, may_stop_early: bool = False):
        super().__init__()
        self.label = label
        self.epochs = epochs
        self.may_stop_early = may_stop_early
        self.rows: list[dict] = []
        self.epoch_times: list[float] = []  # seconds per epoch, validation included
        self._t0 = 0.0
        self._lr = float("nan")
        self._step0 = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._lr = float(self.model.optimizer.learning_rate.numpy())
        self._step0 = int(self.model.optimizer.iterations.numpy())

    def _rate_text(self) -> str:
        """The rate(s) the epoch's steps used: one value or, under a schedule, first -> last, with
        the highest rate between them when it exceeds both (a warm-up ending inside the epoch)."""
        opt = self.model.optimizer
        schedule = getattr(opt, "_learning_rate", None)
        last_step = int(opt.iterations.numpy()) - 1
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) or \
                last_step <= self._step0:
            return f"{self._lr:.3g}"
        steps = {last_step, *(self._step0 + (last_step - self._step0) * i // 16
                              for i in range(1, 16))}
        peak_step = getattr(schedule, "warmup_steps", None)
        if isinstance(peak_step, int) and self._step0 < peak_step < last_step:
            steps.add(peak_step)

        def rate(step):
            return float(keras.ops.convert_to_numpy(schedule(step)))

        last = rate(last_step)
        peak = max(rate(k) for k in steps)
        text = f"{self._lr:.3g}"
        if peak > 1.001 * max(self._lr, last):
            text += f" -> {peak:.3g}"
        if not math.isclose(last, self._lr, rel_tol=1e-3) or text != f"{self._lr:.3g}":
            text += f" -> {last:.3g}"
        return text

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
               "val_loss": float(logs.get("val_loss", float("nan"))), "lr": self._lr}
        self.rows.append(row)
        self.epoch_times.append(time.perf_counter() - self._t0)
        total = self.epochs or row["epoch"]
        log.info("%s epoch %d/%d: loss %.6g val_loss %.6g lr %s (%.1f s, %s)", self.label,
                 row["epoch"], total, row["loss"], row["val_loss"], self._rate_text(),
                 self.epoch_times[-1],
                 eta(self.epoch_times, row["epoch"], total, at_most=self.may_stop_early))


class KeepBest(keras.callbacks.Callback):
    """Keep the weights with the lowest ``val_loss``, the weights before training included (with
    their loss ``initial_loss``), and restore them when training ends; ``best_epoch`` is 0 when no
    epoch improved on the start."""

    def __init__(self, initial_loss: float):
        super().__init__()
        self.best = float(initial_loss)
        self.best_epoch = 0
        self._weights = None

    def on_train_begin(self, logs=None):
        self._weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get("val_loss")
        if v is not None and math.isfinite(float(v)) and float(v) < self.best:
            self.best, self.best_epoch = float(v), epoch + 1
            self._weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)
