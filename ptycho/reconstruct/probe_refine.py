"""The probe a cell's arms are told, refined on its train split (``data: probe_source:
train_refined``, docs/own-data.md).

A measured scan ships a probe that is only an approximate model of the beam. This step
reconstructs the cell's *train split* with pty-chi LSQML (probe refinement on, starting from the
train file's probe, flat object; :func:`ptycho.reconstruct.iterative.reconstruct_iterative`) and
keeps the probe it ends with. The test split is never read: the refined probe is a property of the
instrument learnt from training data, like a network's weights. The result is written as a
refined-probe file (:mod:`ptycho.data.probe_file`), and :func:`ptycho.data.probe_file.apply_probe`
then makes it the nominal probe of both splits.

Normalisation: the refined modes are scaled to the given probe's total power and turned by one
global phase onto the given first mode (neither is determined by the data: the forward model
divides by the probe's power, and a global phase is invisible in counts).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ptycho.config import IterativeConfig, ProbeRefinementConfig
from ptycho.data.dataset import Dataset
from ptycho.data.probe_file import RefinedProbe, as_modes, file_sha256, write_probe_file
from ptycho.errors import ConfigError, DatasetError

log = logging.getLogger("ptycho.probe_refine")


def refinement_config(settings: ProbeRefinementConfig) -> IterativeConfig:
    """The LSQML settings of a train-split refinement: the study's ``probe_refinement`` with probe
    refinement on and no position correction; one snapshot (the final epoch)."""
    it = settings.iterations
    if isinstance(it, bool) or not isinstance(it, int) or it < 1:
        raise ConfigError(f"data/probe_refinement/iterations: must be an integer >= 1, got {it!r}")
    return IterativeConfig(iterations=int(it), batch_size=int(settings.batch_size),
                           noise_model=settings.noise_model, refine_probe=True,
                           snapshots=(int(it),), probe_modes=int(settings.probe_modes))


def normalise_modes(refined: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``refined`` modes scaled to the total power of ``given`` and turned by one global phase so
    that their first modes' overlap is real and positive."""
    r = np.asarray(refined, dtype=np.complex128)
    g = np.asarray(given, dtype=np.complex128)
    r = r * np.sqrt(np.sum(np.abs(g) ** 2) / np.sum(np.abs(r) ** 2))
    v = np.vdot(r[0], g[0])
    if abs(v) > 0:
        r = r * (v / abs(v))
    return r.astype(np.complex64)


def refine_train_probe(train_path, settings: ProbeRefinementConfig, out_path, threads: int = 1,
                       device: str = "auto") -> RefinedProbe:
    """Refine the probe of ``train_path`` (a train split) with pty-chi LSQML and write the
    refined-probe file ``out_path``; returns its content.

    ``info`` records the LSQML cost per epoch, the wall time, the change from the given probe
    (relative probe error between them) and, when the train file holds the true probe (a simulated
    cell with a probe error), the relative probe error of the given and of the refined probe.
    """
    from ptycho.physics.errors import relative_probe_error
    from ptycho.reconstruct.iterative import reconstruct_iterative

    train_path = Path(train_path)
    cfg = refinement_config(settings)
    with Dataset(train_path, require_object=False) as ds:
        if ds.split != "train":
            raise DatasetError(f"{train_path}: the probe is refined on a train split only; this "
                               f"file is the {ds.split!r} split")
        given = as_modes(ds.probe_modes, str(train_path))
        true = ds.true_probe if ds.has_model_errors else None
    t0 = time.perf_counter()
    rec = reconstruct_iterative(train_path, cfg, threads=threads, device=device)
    wall = time.perf_counter() - t0
    if rec.probe is None:  # pragma: no cover - refine_probe is on, so the solver returns it
        raise DatasetError(f"{train_path}: the refinement returned no probe")
    modes = normalise_modes(rec.probe, given)

    def one(m):
        return m[0] if len(m) == 1 else m

    info = {"solver": rec.info.get("solver"), "ptychi_version": rec.info.get("ptychi_version"),
            "cost_history": rec.info.get("cost_history"), "wall_time_s": wall,
            "n_patterns": int(rec.n_patterns), "device": rec.info.get("device"),
            "probe_modes": len(modes),
            "refined_probe_power_ratio": rec.info.get("refined_probe_power_ratio"),
            "probe_change": relative_probe_error(one(modes), one(given))}
    if true is not None:
        info["given_probe_error"] = relative_probe_error(one(given), true)
        info["refined_probe_error"] = relative_probe_error(one(modes), true)
    settings_rec = {"iterations": cfg.iterations, "batch_size": cfg.batch_size,
                    "probe_modes": cfg.probe_modes, "noise_model": cfg.noise_model,
                    "refine_probe": True, "start": "the train file's probe, flat object",
                    "split": "train"}
    out = RefinedProbe(probe=modes, given_probe=given, train_file=str(train_path),
                       train_sha256=file_sha256(train_path), settings=settings_rec, info=info)
    write_probe_file(out_path, out)
    log.info("refined probe of %s: %d LSQML epochs in %.1f s, change from the given probe %.3f%s",
             train_path, cfg.iterations, wall, info["probe_change"] or float("nan"),
             "" if true is None else (f", probe error {info['given_probe_error']:.3f} -> "
                                      f"{info['refined_probe_error']:.3f}"))
    return out


__all__ = ["normalise_modes", "refine_train_probe", "refinement_config"]
