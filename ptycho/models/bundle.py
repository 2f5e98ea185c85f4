"""The model bundle of a trained network arm: its reading and writing, one module below both
training (which writes it) and inference (which reads it).

A bundle is four files, written to temporary names and renamed together on success
(:func:`write_bundle`, the bundle last, so it only exists beside a model):

  model.keras   the full Keras model (custom layers registered; reload with compile=False)
  bundle.json   what inference and the report need: arm, gridsize, N, normalisation, dose,
                config, seeds, package versions, n_train, n_val, epochs run, wall time, losses
  history.csv   epoch, loss, val_loss, lr
  curve.png     loss curves (log y)

:func:`read_bundle` reads and checks ``bundle.json``; :func:`load_model` loads ``model.keras`` and
checks it against its bundle.
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import numpy as np

from ptycho.data.io import atomic_path, check_zip_archive, read_json
from ptycho.errors import TrainingError

BUNDLE_VERSION = 1
BUNDLE_KEYS = ("arm", "gridsize", "N", "dose", "normalisation", "seeds", "config")


def read_bundle(path, expected_arm: str | None = None) -> dict:
    """The bundle of a trained model; with ``expected_arm`` (the rule's arm) a bundle of another
    arm (e.g. copied into the wrong folder) is refused, naming both."""
    path = Path(path)
    bundle = read_json(path, "model bundle", TrainingError)
    missing = [k for k in BUNDLE_KEYS if k not in bundle]
    if missing:
        raise TrainingError(f"{path}: model bundle lacks {missing}")
    if expected_arm is not None and bundle["arm"] != expected_arm:
        raise TrainingError(f"{path}: model bundle of arm '{bundle['arm']}', but this "
                            f"reconstruction is of arm '{expected_arm}'")
    return bundle


def load_model(model_path, bundle: dict, bundle_path="bundle"):
    """Load ``model.keras`` (custom layers registered on import) and check it against its bundle."""
    import keras

    import ptycho.models.baseline
    import ptycho.models.pinn  # noqa: F401

    model_path = Path(model_path)
    if not model_path.is_file():
        raise TrainingError(f"{model_path}: model file not found")
    check_zip_archive(model_path, "model", TrainingError)  # keras says "File not found" for these
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a bad archive
        raise TrainingError(f"{model_path}: cannot load the model (corrupt or not a model of this "
                            f"package: {type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
                            ) from None
    shape = tuple(model.inputs[0].shape[1:])
    N, C = int(bundle["N"]), int(bundle["gridsize"]) ** 2
    if shape != (N, N, C):
        raise TrainingError(f"{model_path}: model input {shape} does not match its bundle "
                            f"{bundle_path} (N = {N}, gridsize {bundle['gridsize']}: ({N}, {N}, {C}))")
    return model


def write_bundle(model, bundle: dict, rows: list[dict], model_path, bundle_path, history_path,
                  curve_path) -> None:
    """Write the four outputs to temporary names and rename them together on success."""
    with contextlib.ExitStack() as stack:
        # Renamed in reverse order of entry: the bundle last, so it only exists beside a model.
        tmp_bundle = stack.enter_context(atomic_path(bundle_path, ".json"))
        tmp_hist = stack.enter_context(atomic_path(history_path, ".csv"))
        tmp_curve = stack.enter_context(atomic_path(curve_path, ".png"))
        tmp_model = stack.enter_context(atomic_path(model_path, ".keras"))
        with open(tmp_hist, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["epoch", "loss", "val_loss", "lr"])
            w.writeheader()
            w.writerows(rows)
        plot_history(rows, tmp_curve, f"{bundle['arm']} | dose {bundle['dose_label']} | "
                     f"{bundle['overlap_view']}", bundle["loss"])
        model.save(tmp_model)
        tmp_bundle.write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n")


def plot_history(rows: list[dict], path, title: str, loss_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ep = [r["epoch"] for r in rows]
    for key, lab in (("loss", "training"), ("val_loss", "validation")):
        vals = [r[key] if r[key] > 0 else np.nan for r in rows]
        ax.plot(ep, vals, marker="o", ms=3, label=lab)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


__all__ = ["BUNDLE_KEYS", "BUNDLE_VERSION", "load_model", "plot_history", "read_bundle", "write_bundle"]
