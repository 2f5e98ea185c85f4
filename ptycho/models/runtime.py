"""TensorFlow runtime settings of a job: thread pools, GPU memory growth and quiet start-up.

TensorFlow's C++ runtime writes its start-up messages (oneDNN, CUDA stubs, "failed call to cuInit"
on a machine without a GPU) straight to the process's standard error, before any log level applies.
:func:`configure_tensorflow`, which loads TensorFlow in the training and inference code, holds them
back (they are shown if loading fails) and, unless set already, sets ``TF_CPP_MIN_LOG_LEVEL=2``
(TensorFlow's own INFO and WARNING lines off). ``PTYCHO_TF_LOG=1`` in the environment brings all
of it back; a ``TF_CPP_MIN_LOG_LEVEL`` set by the user is kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import tempfile

log = logging.getLogger(__name__)

TF_LOG_SWITCH = "PTYCHO_TF_LOG"


def tensorflow_log_wanted() -> bool:
    """True when ``PTYCHO_TF_LOG`` is set to anything but empty, 0, false or no."""
    return os.environ.get(TF_LOG_SWITCH, "").strip().lower() not in ("", "0", "false", "no")


def quiet_tensorflow_env() -> None:
    """``TF_CPP_MIN_LOG_LEVEL=2`` unless set already or ``PTYCHO_TF_LOG`` is on; effective only
    before TensorFlow is imported."""
    if not tensorflow_log_wanted():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to a temporary file for the block (C++ writes bypass Python); replay
    what was held back if the block fails, else keep it for the DEBUG log."""
    if tensorflow_log_wanted():
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to redirect
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            if failed and text:
                sys.stderr.write(text)
                sys.stderr.flush()
            elif text:
                log.debug("TensorFlow start-up messages (%s=1 shows them):\n%s", TF_LOG_SWITCH,
                          text.rstrip())


def configure_tensorflow(threads: int = 1) -> None:
    """Load TensorFlow quietly (see the module docstring), limit its thread pools to the job's
    ``threads``, make its ops deterministic and enable GPU memory growth.

    Both settings only take effect before TensorFlow initialises its runtime; later calls in the same
    process (e.g. a second training in a test session) keep the first settings and log it.
    """
    quiet_tensorflow_env()
    with _quiet_stderr():
        _configure_tensorflow(threads)


def _configure_tensorflow(threads: int) -> None:
    import tensorflow as tf

    threads = max(1, int(threads))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.debug("TensorFlow already initialised; keeping its thread settings")
    # deterministic kernels: the same seed gives the same weights however busy the machine is
    # (a multi-threaded reduction may otherwise add its partial sums in another order)
    tf.config.experimental.enable_op_determinism()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.debug("TensorFlow already initialised; keeping GPU memory settings")


def peak_gpu_mb() -> float | None:
    """Peak GPU memory TensorFlow allocated in this process (MB, the largest over its GPUs), or
    None without a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return None
    return max(tf.config.experimental.get_memory_info(g.name)["peak"] for g in gpus) / 2**20


def package_versions() -> dict:
    """Versions recorded in a model bundle."""
    import h5py
    import keras
    import numpy
    import tensorflow as tf

    import ptycho

    return {"ptycho": ptycho.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "h5py": h5py.__version__}
