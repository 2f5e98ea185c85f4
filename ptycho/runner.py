"""Glue for workflow scripts: logging to the rule's log file, thread limits, clean failures.

A script does::

    from ptycho.runner import run_job
    def main(smk): ...            # uses smk.input / smk.output / smk.params / smk.threads
    run_job(snakemake, main)

Any ``PtychoError`` becomes a one-line message (in the log and on stderr) and exit status 1;
outputs are written atomically by the library, so a failed job leaves none behind.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path

from ptycho.errors import PtychoError

log = logging.getLogger("ptycho")


def limit_threads(n: int) -> None:
    """Limit BLAS/OpenMP threads before NumPy/TF/torch start their pools."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # idle OpenMP threads must not spin: with several jobs per core they starve each other
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_job(smk, main) -> None:
    """Run ``main(smk)`` with logging and error handling; exits non-zero on failure."""
    log_path = smk.log[0] if len(smk.log) else None
    setup_logging(log_path)
    limit_threads(getattr(smk, "threads", 1))
    rule = getattr(smk, "rule", "job")
    t0 = time.perf_counter()
    try:
        main(smk)
    except PtychoError as exc:
        log.error("%s failed: %s", rule, exc)
        sys.exit(1)
    except Exception:
        log.error("%s failed with an unexpected error:\n%s", rule, traceback.format_exc())
        sys.exit(1)
    log.info("%s finished in %.1f s", rule, time.perf_counter() - t0)
