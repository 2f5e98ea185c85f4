"""Training callbacks: a NaN guard and an epoch recorder (history with the learning rate)."""

from __future__ import annotations

import logging
import math
import time

import keras

from ptycho.errors import TrainingError

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

    ``lr`` is the learning rate the epoch ran with (read before ReduceLROnPlateau acts on it).
    """

    def __init__(self, label: str):
        super().__init__()
        self.label = label
        self.rows: list[dict] = []
        self.epoch_times: list[float] = []  # seconds per epoch, validation included
        self._t0 = 0.0
        self._lr = float("nan")

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._lr = float(self.model.optimizer.learning_rate.numpy())

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
               "val_loss": float(logs.get("val_loss", float("nan"))), "lr": self._lr}
        self.rows.append(row)
        self.epoch_times.append(time.perf_counter() - self._t0)
        log.info("%s epoch %d: loss %.6g val_loss %.6g lr %.3g (%.1f s)", self.label, row["epoch"],
                 row["loss"], row["val_loss"], row["lr"], self.epoch_times[-1])


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
