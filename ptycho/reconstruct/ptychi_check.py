"""Check that pty-chi (the iterative arm's solver) is importable, without importing it here.

pty-chi pulls in torch and torchvision; importing them after TensorFlow ends in a segmentation
fault (docs/conventions.md, "Two frameworks, two processes"). The check therefore runs
``import ptychi, torchvision`` in a fresh Python subprocess, so a TensorFlow process can call it safely. torchvision is imported
too because a mismatched torch/torchvision pair ("operator torchvision::nms does not exist") only
fails there, while ``import ptychi`` alone would pass (it imports torchvision lazily, in
``ptychi.api``). Cost: ~7 s of CPU on this machine kind.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from ptycho.errors import PtychoError

INSTALL_HINT = 'pip install -e ".[iterative]"'
CHECK_IMPORT = "import ptychi, torchvision"



def ensure_ptychi(timeout_s: float = 300.0) -> None:
    """Raise ``PtychoError`` with the install command when pty-chi cannot be imported."""
    if importlib.util.find_spec("ptychi") is None:
        raise PtychoError(
            f"the iterative arm needs pty-chi, which is not installed in {sys.executable}; "
            f"install it with: {INSTALL_HINT}"
        )
    try:
        proc = subprocess.run([sys.executable, "-c", CHECK_IMPORT], check=False,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise PtychoError(f"'{CHECK_IMPORT}' did not finish in {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise PtychoError(
            f"pty-chi is installed but '{CHECK_IMPORT}' fails "
            f"(exit {proc.returncode}: {' | '.join(tail)}); reinstall with: {INSTALL_HINT}"
        )


__all__ = ["CHECK_IMPORT", "INSTALL_HINT", "ensure_ptychi"]
