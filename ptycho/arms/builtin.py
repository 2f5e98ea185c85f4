"""The built-in arms behind the :class:`~ptycho.arms.base.Arm` interface.

``iterative`` (pty-chi LSQML from a flat object; its settings are keys of the scale's
``iterative`` block, which they override), ``hybrid`` (the same from the study's hybrid start
arm's reconstruction), ``pinn`` / ``baseline`` (train a network, then infer and stitch) and
``adapted`` is not offered here (it fine-tunes the study's PINN: its own workflow rule). The
workflow runs the study's built-in arms through their own rules; these classes serve variants,
plugins that extend a built-in arm and the Python API.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from ptycho.arms.base import Arm
from ptycho.config import IterativeConfig, load_schema, snapshot_epochs
from ptycho.errors import ConfigError
from ptycho.reconstruct.io import Reconstruction


def _iterative_schema() -> dict:
    return load_schema("study")["definitions"]["iterative"]


class IterativeArm(Arm):
    """pty-chi LSQML from a flat object with the scale's iterative block, ``settings`` applied."""

    reads = ("test",)

    @classmethod
    def validate(cls, settings: dict, where: str) -> dict:
        block = _iterative_schema()
        for key in settings:
            if key not in block.get("properties", {}):
                raise ConfigError(f"{where}/{key}: not a key of the iterative block (expected one "
                                  f"of {sorted(block.get('properties', {}))})")
        return dict(settings)

    def config(self) -> IterativeConfig:
        """The scale's iterative block with the settings applied (a variant's, resolved with the
        study)."""
        ctx = self.context
        ident = ctx.identity
        if ident.is_variant and ident.kind == "iterative":
            return ctx.study.variant(ident.name).iterative[ctx.scale]
        base = asdict(ctx.study.scale(ctx.scale).iterative)
        if not self.settings:
            return IterativeConfig(**base)
        if "iterations" in self.settings and "snapshots" not in self.settings:
            base["snapshots"] = None
        merged = {**base, **self.settings}
        merged["snapshots"] = snapshot_epochs(merged["iterations"], merged.get("snapshots"),
                                              f"arm {ident.name!r}: 'snapshots'")
        return IterativeConfig(**merged)

    def reconstruct(self, test_path, *, model_dir=None, start_path=None) -> Reconstruction:
        job = {"test": str(test_path), "iterative": asdict(self.config()),
               "threads": int(self.context.threads),
               "start": None if start_path is None else str(start_path),
               "start_arm": self._start_arm()}
        if "tensorflow" in sys.modules:  # pty-chi never runs beside TensorFlow: a child process
            rec = _isolated(job)
        else:
            rec = iterative_job(job)
        if self.context.overlap is not None:
            rec.overlap_view = self.context.overlap
        return rec

    def _start_arm(self):
        return None


class HybridArm(IterativeArm):
    """LSQML started from the study's hybrid start arm's reconstruction of the test split."""

    reads = ("test", "start")

    def reconstruct(self, test_path, *, model_dir=None, start_path=None) -> Reconstruction:
        if start_path is None:
            raise ConfigError(f"arm {self.name!r} starts from a network reconstruction (start)")
        return super().reconstruct(test_path, model_dir=model_dir, start_path=start_path)

    def _start_arm(self):
        hyb = self.context.study.hybrid
        return hyb.start_from if hyb else None


def iterative_job(job: dict) -> Reconstruction:
    """pty-chi LSQML of ``job['test']`` (a JSON-able job: iterative settings, threads, start
    reconstruction and its arm) -> the Reconstruction (written to ``job['out']`` when given)."""
    from ptycho.reconstruct.io import write_reconstruction
    from ptycho.reconstruct.iterative import load_network_start, reconstruct_iterative

    cfg = dict(job["iterative"])
    if cfg.get("snapshots") is not None:
        cfg["snapshots"] = tuple(cfg["snapshots"])
    start = job.get("start")
    start = None if start is None else load_network_start(start, job.get("start_arm"))
    rec = reconstruct_iterative(job["test"], IterativeConfig(**cfg), threads=job["threads"],
                                start=start)
    if job.get("out"):
        write_reconstruction(job["out"], rec)
    return rec


def _isolated(job: dict) -> Reconstruction:
    """:func:`iterative_job` in a child process (this one has imported TensorFlow)."""
    import tempfile

    from ptycho.child import run_in_child
    from ptycho.reconstruct.io import read_reconstruction

    with tempfile.TemporaryDirectory(prefix="ptycho-arm-") as tmp:
        job = {**job, "out": str(Path(tmp) / "recon.h5")}
        run_in_child("ptycho.arms.builtin:iterative_job", job, "pty-chi")
        return read_reconstruction(job["out"])


class NetworkArm(Arm):
    """A built-in network (pinn_g<g> or baseline): train on the train split, then infer and
    stitch the test split with the study's settings."""

    reads = ("train", "test", "labels")
    trains = True

    def train(self, train_path, model_dir) -> None:
        from ptycho.training.fit import train_arm

        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        ctx = self.context
        train_arm(self._network_id(), train_path, ctx.study, ctx.scale, model_dir / "model.keras",
                  model_dir / "bundle.json", model_dir / "history.csv", model_dir / "loss.png",
                  threads=ctx.threads, replicate=ctx.replicate)

    def _network_id(self) -> str:
        return self.context.identity.name if self.context.identity.builtin else "pinn_g1"

    def reconstruct(self, test_path, *, model_dir=None, start_path=None) -> Reconstruction:
        import tempfile

        from ptycho.reconstruct.inference import reconstruct_with_study
        from ptycho.reconstruct.io import read_reconstruction

        ctx, model_dir = self.context, Path(model_dir)
        with tempfile.TemporaryDirectory(prefix="ptycho-arm-") as tmp:
            out = Path(tmp) / "recon.h5"
            reconstruct_with_study(model_dir / "model.keras", model_dir / "bundle.json",
                                   test_path, ctx.study, ctx.scale, ctx.overlap or "", out,
                                   threads=ctx.threads, expected_arm=self._network_id())
            return read_reconstruction(out)


BUILTIN_ARMS: dict[str, type[Arm]] = {
    "iterative": IterativeArm,
    "hybrid": HybridArm,
    "pinn": NetworkArm,
    "baseline": NetworkArm,
}
