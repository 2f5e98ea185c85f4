"""TensorFlow runtime settings of a job: thread pools and GPU memory growth."""

from __future__ import annotations

import logging
import platform
import sys

log = logging.getLogger(__name__)


def configure_tensorflow(threads: int = 1) -> None:
    """Limit TensorFlow's thread pools to the job's ``threads``, make its ops deterministic and
    enable GPU memory growth.

    Both settings only take effect before TensorFlow initialises its runtime; later calls in the same
    process (e.g. a second training in a test session) keep the first settings and log it.
    """
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
