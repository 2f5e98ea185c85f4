"""Progress lines of long jobs (arm, cell, replicate, k/K, ETA, the learning rate a schedule uses)
and TensorFlow's quiet start-up."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from ptycho.progress import eta, format_duration, job_label


def test_durations_and_eta():
    assert format_duration(4.4) == "4 s"
    assert format_duration(80) == "1 min 20 s"
    assert format_duration(7500) == "2 h 5 min"
    assert job_label("pinn_g1", "1e5", "dense", 0) == "pinn_g1 1e5_dense_r0"
    assert job_label("iterative", "1e4", "dense", 1, "probe25") == "iterative 1e4_dense_probe25_r1"
    assert job_label("pinn_g1", "1e5", "dense", 0, None) == "pinn_g1 1e5_dense_r0"
    # the first (tracing) epoch is left out of the mean once there are others
    assert eta([30.0, 2.0, 4.0], 3, 10) == "ETA 21 s"
    assert eta([30.0], 1, 3, at_most=True) == "ETA at most 1 min 0 s"
    assert eta([1.0, 1.0], 2, 2) == "done"


class _Source:
    """A BatchSource stand-in: four batches of (x, y)."""

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.batches = [(rng.normal(size=(8, 3)).astype("float32"),
                         rng.normal(size=(8, 1)).astype("float32")) for _ in range(4)]

    def __call__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


@pytest.mark.parametrize("scheduled", [False, True])
def test_epoch_lines_carry_k_of_K_eta_and_the_rate_used(caplog, scheduled):
    from ptycho.models.runtime import configure_tensorflow

    configure_tensorflow(1)
    import keras

    from ptycho.training import loop
    from ptycho.training.callbacks import EpochRecorder
    from ptycho.training.fit import cosine_schedule

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    rate = cosine_schedule(1e-2, 3, 4) if scheduled else 1e-2
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse")
    rec = EpochRecorder("adapted_g2 1e5_dense_r0", 3, may_stop_early=not scheduled)
    with caplog.at_level(logging.INFO, logger="ptycho.training.callbacks"):
        loop.fit(model, _Source(0), _Source(1), 3, [rec])
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert len(lines) == 3
    for k, line in enumerate(lines, 1):
        assert line.startswith(f"adapted_g2 1e5_dense_r0 epoch {k}/3: loss ")
    assert ("ETA at most" in lines[0]) is not scheduled and lines[-1].endswith(", done)")
    if scheduled:  # warm-up from 0 over the first epoch: its line gives the rates it used
        assert "lr 0 -> 0.0075 (" in lines[0] and "lr 0.01 -> " in lines[1]
        assert rec.rows[0]["lr"] == 0.0  # history: the rate of the first step
    else:
        assert all("lr 0.01 (" in line for line in lines)


def test_a_warm_up_ending_inside_the_epoch_shows_its_peak(caplog):
    from ptycho.models.runtime import configure_tensorflow

    configure_tensorflow(1)
    import keras

    from ptycho.training import loop
    from ptycho.training.callbacks import EpochRecorder
    from ptycho.training.fit import cosine_schedule

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    # one epoch of 4 steps: warm-up over steps 0-2 (peak 0.01 at step 2), decay at step 3
    model.compile(optimizer=keras.optimizers.Adam(cosine_schedule(1e-2, 1, 4)), loss="mse")
    with caplog.at_level(logging.INFO, logger="ptycho.training.callbacks"):
        loop.fit(model, _Source(0), _Source(1), 1, [EpochRecorder("adapted_g2 1e3_sparse_r1", 1)])
    (line,) = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert line.startswith("adapted_g2 1e3_sparse_r1 epoch 1/1: ")
    assert "lr 0 -> 0.01 -> 0.005 (" in line and line.endswith(", done)")


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, **env})


def test_importing_the_api_and_loading_tensorflow_print_nothing():
    r = _run("from ptycho import api")
    assert r.returncode == 0 and r.stdout == r.stderr == ""
    env = {k: v for k, v in os.environ.items() if k not in ("PTYCHO_TF_LOG", "TF_CPP_MIN_LOG_LEVEL")}
    code = "from ptycho.models.runtime import configure_tensorflow; configure_tensorflow()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       check=False, env=env)
    assert r.returncode == 0 and r.stdout == r.stderr == "", r.stderr
    # the documented switch brings TensorFlow's start-up lines back
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       check=False, env={**env, "PTYCHO_TF_LOG": "1"})
    assert r.returncode == 0 and r.stderr.strip() != ""
