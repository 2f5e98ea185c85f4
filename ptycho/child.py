"""Run one package function in a child Python process: pty-chi (torch) and TensorFlow do not share
a process well, so a job that has imported TensorFlow runs a pty-chi solve in a child. The
function gets one JSON-serialisable dict; its failure becomes one line naming what failed."""

from __future__ import annotations

import json
import subprocess
import sys

from ptycho.errors import PtychoError

_CODE = ("import importlib, json, sys; m, f = sys.argv[1].split(':'); "
         "getattr(importlib.import_module(m), f)(json.loads(sys.argv[2]))")


def run_in_child(target: str, job: dict, what: str) -> None:
    """Call ``target`` (``"package.module:function"``) with ``job`` in a child process; a non-zero
    exit raises :class:`PtychoError` ``"<what> failed in its child process (exit N): <last line>"``."""
    proc = subprocess.run([sys.executable, "-c", _CODE, target, json.dumps(job)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PtychoError(f"{what} failed in its child process (exit {proc.returncode}): "
                          f"{tail[0]}")
