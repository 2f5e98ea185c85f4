"""Atomic file writing helpers: results appear complete or not at all.

A result is written to a hidden temporary ``.<name>.partial-<random><suffix>`` beside it and renamed
onto its name when complete. A writer killed with SIGKILL (or a power cut) leaves that temporary
behind: ``is_partial`` recognises it, ``remove_partial_files`` removes such leftovers (the workflow
does so when a run starts, holding ``lock_directory`` on the results so no other run is writing),
the inventory never lists them and the verification fails while one is present. A full disk or an
exceeded quota while writing becomes a one-line ``StorageError`` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ptycho.errors import PtychoError, StorageError

PARTIAL_MARK = ".partial-"
# .<name>.partial-XXXXXXXX<suffix>, and the older .<name>.XXXXXXXX<suffix> (mkstemp's 8 characters)
_PARTIAL = re.compile(r"^\..+\.(partial-)?[a-z0-9_]{8}\.[A-Za-z0-9]+$")
LOCK_NAME = "run.lock"

# errors that mean "the storage cannot take this file", whatever was being written
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
_STORAGE_WORDS = {os.strerror(e) for e in _STORAGE_ERRNOS}


def is_partial(name: str) -> bool:
    """True for the name of an ``atomic_path`` temporary (a result being written, or a leftover)."""
    return bool(_PARTIAL.match(name))


def remove_partial_files(root: str | Path) -> list[Path]:
    """Remove leftover ``atomic_path`` temporaries under ``root``; return what was removed. Only
    safe while no job writes under ``root`` (the workflow holds ``lock_directory``)."""
    removed = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if is_partial(name):
                p = Path(dirpath) / name
                p.unlink(missing_ok=True)
                removed.append(p)
    return sorted(removed)


def storage_error(exc: BaseException, path) -> StorageError | None:
    """A one-line ``StorageError`` naming ``path`` when ``exc`` says the storage is full, over
    quota, read-only or failing (an ``OSError`` errno, or the system message that h5py relays in
    an ``OSError`` or ``RuntimeError``); else None."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return StorageError(f"{path}: cannot write: {os.strerror(exc.errno)}")
    if isinstance(exc, (OSError, RuntimeError)):
        reason = next((w for w in sorted(_STORAGE_WORDS) if w in str(exc)), None)
        if reason is not None:
            return StorageError(f"{path}: cannot write: {reason}")
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    On any error the temporary is removed; a storage error (disk full, quota) is raised as a
    ``StorageError`` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # SIGTERM/SIGINT wait until the temporary is in hand, so that their handlers' unwinding
    # (ptycho.runner) always finds it to remove
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}{PARTIAL_MARK}",
                                    suffix=suffix or path.suffix or ".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    except OSError as exc:
        raise (storage_error(exc, path) or exc) from exc
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        err = storage_error(exc, path)
        if err is not None and err is not exc:
            raise err from exc
        raise


def lock_directory(directory: str | Path):
    """Hold an exclusive lock on ``directory`` (an flock on its ``run.lock``) until the returned
    file is closed or the process ends; PtychoError naming the holder when another process has it.
    Two Snakemake runs from different working directories on one results root would otherwise run
    the same jobs at once (Snakemake's own lock lives in each working directory's .snakemake)."""
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fh = open(path, "a+")  # noqa: SIM115 - held open: the lock lasts as long as the file
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = " ".join(fh.read().split()) or "another process"
        fh.close()
        raise PtychoError(f"{path}: the results directory is in use by another run ({holder}); "
                          "wait for it to finish or choose another 'results' root") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}, working directory {os.getcwd()}, "
             f"since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    fh.flush()
    return fh


def read_json(path: str | Path, what: str = "JSON file", error=None):
    """Load a JSON file; a missing or malformed file raises ``error`` (default PtychoError)
    naming the file and what it should have been."""
    error = error or PtychoError
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {what} is not valid JSON ({exc})") from exc


def check_zip_archive(path: str | Path, what: str, error=None) -> None:
    """Raise ``error`` (default PtychoError) naming ``path`` when it is not an intact ZIP archive
    (a ``.keras`` model is one): unreadable, truncated, or a member failing its CRC check."""
    import zipfile

    error = error or PtychoError
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, OSError ...
        reason = " ".join(str(exc).split())[:200]
        raise error(f"{path}: cannot load the {what}: the file is corrupt (not a readable ZIP "
                    f"archive: {type(exc).__name__}: {reason})") from None
    if bad is not None:
        raise error(f"{path}: cannot load the {what}: the file is corrupt (archive member "
                    f"'{bad}' fails its CRC check)")


def write_json(path: str | Path, obj) -> None:
    """Write strict JSON atomically; non-finite floats become null (JSON has no NaN)."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=_default, allow_nan=False)
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(text + "\n")


def _finite(o):
    import math

    import numpy as np

    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(float(o)) else None
    return o


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
