"""Fault injection for tests/test_workflow.py, which puts this folder on PYTHONPATH of one
Snakemake run only. With PTYCHO_TEST_KILL set, a process kills itself with SIGKILL mid-write, as
a power cut or the kernel's out-of-memory killer would:

- ``stitch``: in ``PatchStore.stitch`` (the patch store in the temporary directory is open);
- any other comma-separated entry, a path suffix such as ``eval/baseline/1e5_dense/aligned.h5``:
  once ``atomic_path`` has written that file's temporary, before renaming it onto the file.
"""

import os

_targets = [t for t in os.environ.get("PTYCHO_TEST_KILL", "").split(",") if t]
if _targets:
    import contextlib
    import signal

    import ptycho.data.io as _io
    import ptycho.reconstruct.patchstore as _ps

    def _die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    _atomic_path = _io.atomic_path

    @contextlib.contextmanager
    def _killing_atomic_path(path, suffix=None):
        with _atomic_path(path, suffix) as tmp:
            yield tmp
            if any(str(path).endswith(t) for t in _targets):
                _die()

    _io.atomic_path = _killing_atomic_path  # before any module imports it by name
    if "stitch" in _targets:
        _ps.PatchStore.stitch = _die
