"""Glue for workflow scripts: logging to the rule's log file, thread limits, clean failures.

A script does::

    from ptycho.runner import run_job
    def main(smk): ...            # uses smk.input / smk.output / smk.params / smk.threads
    run_job(snakemake, main)

Any ``PtychoError`` becomes a one-line message (in the log and on stderr) and exit status 1, and
so does an ``OSError`` that says the storage is full or over quota (naming the file); outputs are
written atomically by the library, so a failed job leaves none behind. SIGTERM (what Snakemake and
batch systems send to stop a job) unwinds the job like an error, so its temporaries are removed;
only SIGKILL leaves them, and the next run removes those (``ptycho.data.io.remove_partial_files``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from ptycho.data.io import storage_error
from ptycho.errors import PtychoError, StorageError
from ptycho.models.runtime import quiet_tensorflow_env

log = logging.getLogger("ptycho")


def limit_threads(n: int) -> None:
    """Limit BLAS/OpenMP threads before NumPy/TF/torch start their pools."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)
    quiet_tensorflow_env()  # TF_CPP_MIN_LOG_LEVEL=2 unless set or PTYCHO_TF_LOG=1
    # idle OpenMP threads must not spin: with several jobs per core they starve each other
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _exit_after_storage_error(rule: str, exc: BaseException) -> None:
    """Log one line and exit 1 at once: the HDF5 library cannot close a file it could not flush
    and, at interpreter shutdown, crashes trying again (exit 139 instead of 1)."""
    log.error("%s failed: %s", rule, exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _terminate(signum, frame) -> None:
    """SIGTERM -> SystemExit, so context managers run and remove the job's temporaries."""
    raise SystemExit(128 + signum)


def run_job(smk, main) -> None:
    """Run ``main(smk)`` with logging and error handling; exits non-zero on failure."""
    log_path = smk.log[0] if len(smk.log) else None
    setup_logging(log_path)
    limit_threads(getattr(smk, "threads", 1))
    rule = getattr(smk, "rule", "job")
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.perf_counter()
    try:
        main(smk)
    except StorageError as exc:
        _exit_after_storage_error(rule, exc)
    except PtychoError as exc:
        log.error("%s failed: %s", rule, exc)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a job's last resort: one logged line, exit 1
        err = storage_error(exc, getattr(exc, "filename", None) or "(file not named by the system)")
        if err is not None:
            _exit_after_storage_error(rule, err)
        log.error("%s failed with an unexpected error:\n%s", rule, traceback.format_exc())
        sys.exit(1)
    log.info("%s finished in %.1f s", rule, time.perf_counter() - t0)
