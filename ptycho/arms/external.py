"""The external-command arm: any program that reconstructs a test split from a file.

The test split is written for the program (``input_format``: ``npz``, a PtychoPINN NPZ file, or
``ptychodus``, a directory holding ``diffraction.h5`` and ``product.h5``); its object is a flat
start (ones), never the ground truth. The program runs in its own process group, in a temporary
working directory, and is killed with its children after ``timeout_s``. It writes its result to
the output path (``output_format``: ``npz``, a file with key ``object``, (H, W) complex on the
split's object grid, optionally ``weight``; ``ptychodus``, a product file), which becomes the
arm's reconstruction file. Placeholders in ``command``: ``{input}``, ``{output}``, ``{workdir}``,
``{python}`` (this interpreter).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

from ptycho.arms.base import Arm
from ptycho.errors import ConfigError, PtychoError
from ptycho.reconstruct.io import Reconstruction

PLACEHOLDERS = ("input", "output", "workdir", "python")


class ExternalCommandArm(Arm):
    reads = ("test",)
    settings_schema: ClassVar[dict] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["command"],
        "properties": {
            "command": {"type": "array", "minItems": 1, "items": {"type": "string"},
                        "description": "argv of the program, with placeholders {input}, "
                                       "{output}, {workdir}, {python}"},
            "input_format": {"type": "string", "enum": ["npz", "ptychodus"], "default": "npz"},
            "output_format": {"type": "string", "enum": ["npz", "ptychodus"], "default": "npz"},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 3600},
        },
    }

    @classmethod
    def validate(cls, settings: dict, where: str) -> dict:
        out = super().validate(settings, where)
        for i, arg in enumerate(out["command"]):
            try:
                arg.format(**{k: "" for k in PLACEHOLDERS})
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"{where}/command/{i}: {arg!r} has an unknown placeholder "
                                  f"({exc}); expected {{{'}, {'.join(PLACEHOLDERS)}}}") from None
        if "ptychodus" in (out["input_format"], out["output_format"]):
            import importlib.util

            if importlib.util.find_spec("ptychodus") is None:
                raise ConfigError(f"{where}: the ptychodus format needs ptychodus; install it "
                                  'with:  pip install -e ".[interop]"  (or use npz)')
        return out

    def _write_input(self, test_path, work: Path) -> Path:
        geometry = self.context.study.geometry
        with self.open_test(test_path) as ds:
            flat = np.ones(ds.object_shape, np.complex64)
            probe, positions, dose = ds.probe, ds.positions, ds.dose
        if self.settings["input_format"] == "npz":
            from ptycho.interop.npz import export_npz

            path = work / "input.npz"
            export_npz(test_path, path, geometry,
                       reconstruction=SimpleNamespace(object=flat, arm="flat_start", probe=None,
                                                      positions=None, source=str(test_path)))
            return path
        from ptycho.interop import ptychodus as pd

        path = work / "input"
        path.mkdir()
        pd.write_diffraction(path / pd.DIFFRACTION, test_path, geometry)
        product = pd.build_product(f"{self.name} input", {"arm": self.name, "object": "flat start"},
                                   flat, probe, positions, geometry, dose)
        pd.write_product(path / pd.PRODUCT, product)
        return path

    def _read_output(self, out: Path, test_path) -> tuple[np.ndarray, np.ndarray | None]:
        if not out.is_file():
            raise PtychoError(f"the program wrote no output file {out.name}")
        if self.settings["output_format"] == "ptychodus":
            from ptycho.interop.ptychodus import import_reconstruction

            rec = import_reconstruction(out, self.name)
            return rec.object, rec.weight
        try:
            with np.load(out, allow_pickle=False) as z:
                obj = z["object"]
                weight = z["weight"] if "weight" in z.files else None
        except (KeyError, ValueError, OSError) as exc:
            raise PtychoError(f"{out.name} is not an NPZ file with key 'object' ({exc})") from None
        return obj, weight

    def reconstruct(self, test_path, *, model_dir=None, start_path=None) -> Reconstruction:
        work = Path(tempfile.mkdtemp(prefix="ptycho-external-"))
        try:
            inp = self._write_input(test_path, work)
            out = work / ("output.npz" if self.settings["output_format"] == "npz" else "product.h5")
            fill = {"input": str(inp), "output": str(out), "workdir": str(work),
                    "python": sys.executable}
            argv = [a.format(**fill) for a in self.settings["command"]]
            log = work / "program.log"
            t0 = time.perf_counter()
            with open(log, "wb") as fh:
                try:
                    proc = subprocess.Popen(argv, cwd=work, stdout=fh, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                except OSError as exc:
                    raise PtychoError(f"cannot start {argv[0]!r}: {exc}") from None
                try:
                    code = proc.wait(timeout=float(self.settings["timeout_s"]))
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    raise PtychoError(f"{argv[0]!r} ran past timeout_s = "
                                      f"{self.settings['timeout_s']} s and was killed") from None
                except BaseException:
                    _kill_group(proc)
                    raise
            wall = time.perf_counter() - t0
            if code != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise PtychoError(f"{argv[0]!r} exited with status {code}: {tail[0][:300]}")
            obj, weight = self._read_output(out, test_path)
            return self.result(test_path, obj, weight=weight, wall_time_s=wall,
                               info={"command": argv, "input_format": self.settings["input_format"],
                                     "output_format": self.settings["output_format"]})
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program's process group (it and its children) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
