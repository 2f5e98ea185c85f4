"""A name -> an arm, and running an arm into its reconstruction file.

A name resolves to a built-in arm kind (``iterative``, ``hybrid``, ``pinn``, ``baseline``,
``external_command``), ``module:Class`` (imported) or the name of an entry point of the group
``ptycho_dose.arms`` (an installed package's ``[project.entry-points."ptycho_dose.arms"]``).
:func:`check_study_arms` resolves and validates every variant of a study before any job;
:func:`run_arm` trains (when the arm trains) and reconstructs one cell, and writes the
reconstruction file; whatever the arm raises fails it with one line naming the arm, and nothing
half-written stays.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ptycho.arms.base import Arm, ArmContext
from ptycho.arms.builtin import BUILTIN_ARMS
from ptycho.arms.external import ExternalCommandArm
from ptycho.arms.spec import EXTERNAL_COMMAND, PLUGIN, ArmIdentity
from ptycho.config import StudyConfig
from ptycho.errors import ConfigError, PtychoError
from ptycho.reconstruct.io import Reconstruction, write_reconstruction

GROUP = "ptycho_dose.arms"


def builtin_arms() -> dict[str, type[Arm]]:
    return {**BUILTIN_ARMS, EXTERNAL_COMMAND: ExternalCommandArm}


def resolve(target: str, where: str = "arm") -> type[Arm]:
    """The arm class ``target`` names (built-in kind, ``module:Class`` or entry-point name)."""
    builtins = builtin_arms()
    if target in builtins:
        return builtins[target]
    if ":" in target:
        module, _, name = target.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}: cannot import {target!r} ({type(exc).__name__}: "
                              f"{exc})") from None
    else:
        eps = [ep for ep in importlib.metadata.entry_points(group=GROUP) if ep.name == target]
        if not eps:
            raise ConfigError(f"{where}: {target!r} is neither a built-in arm "
                              f"({sorted(builtins)}), module:Class nor an installed entry point "
                              f"of the group {GROUP}")
        try:
            obj = eps[0].load()
        except Exception as exc:  # noqa: BLE001 -- whatever a plugin's import raises
            raise ConfigError(f"{where}: entry point {target!r} ({eps[0].value}) does not load "
                              f"({type(exc).__name__}: {exc})") from None
    if not (isinstance(obj, type) and issubclass(obj, Arm)):
        raise ConfigError(f"{where}: {target!r} is not a subclass of ptycho.arms.base.Arm")
    return obj


def arm_class(study: StudyConfig, arm_id: str, source: str = "<study>"
              ) -> tuple[ArmIdentity, type[Arm]]:
    ident = study.identity(arm_id)
    if ident.kind == PLUGIN:
        return ident, resolve(ident.target, f"{source}: variants/{arm_id}/arm")
    builtins = builtin_arms()
    if ident.kind not in builtins:
        raise ConfigError(f"arm {arm_id!r} ({ident.kind}) has its own workflow rule and no "
                          "Arm class")
    return ident, builtins[ident.kind]


def check_study_arms(study: StudyConfig, source: str = "<study>") -> dict[str, dict]:
    """Resolve every variant and validate its settings (before any job): {name: {'reads',
    'trains', 'settings'}}. ConfigError naming 'variants/<name>/...' when a plugin does not
    load, its settings are wrong, it reads labels in a study without ground truth or reads a
    start reconstruction in a study without a hybrid arm."""
    out = {}
    for v in study.variants:
        where = f"{source}: variants/{v.name}"
        _, cls = arm_class(study, v.name, source)
        settings = cls.validate(dict(v.settings), f"{where}/settings")
        reads = cls.check_reads(where)
        if "labels" in reads and not study.data.ground_truth:
            raise ConfigError(f"{where}: the arm {v.arm!r} trains on ground-truth labels, but "
                              "'data/ground_truth' is false; remove the variant")
        if "start" in reads and study.hybrid is None:
            raise ConfigError(f"{where}: the arm {v.arm!r} starts from the hybrid start arm's "
                              "reconstruction; add the hybrid arm (and 'hybrid/start_from')")
        out[v.name] = {"reads": reads, "trains": bool(cls.trains), "settings": settings}
    return out


def run_arm(study: StudyConfig, scale: str, arm_id: str, test_path, out_path, *,
            train_path=None, start_path=None, model_dir=None, train: bool = True,
            overlap: str | None = None, replicate: int = 0, threads: int = 1) -> Reconstruction:
    """Train (when the arm trains and ``train``) into ``model_dir`` and reconstruct
    ``test_path`` into the reconstruction file ``out_path`` under the arm's id. Any failure
    raises PtychoError with one line naming the arm; ``out_path`` and the model directory are
    written only when the arm succeeded."""
    ident, cls = arm_class(study, arm_id)
    where = f"arm {arm_id!r}" + (f" ({ident.target})" if ident.target else "")
    settings = cls.validate(next((dict(v.settings) for v in study.variants if v.name == arm_id),
                                 {}), f"variants/{arm_id}/settings")
    arm = cls(ArmContext(study=study, scale=scale, identity=ident, settings=settings,
                         overlap=overlap, replicate=int(replicate), threads=int(threads)))
    model_dir = None if model_dir is None else Path(model_dir)
    partial = None
    try:
        if cls.trains and train:
            if model_dir is None or train_path is None:
                raise PtychoError("it trains: run_arm needs train_path and model_dir")
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.partial-",
                                            dir=model_dir.parent))
            arm.train(Path(train_path), partial)
            if model_dir.exists():
                shutil.rmtree(model_dir)
            partial.rename(model_dir)
            partial = None
        rec = arm.reconstruct(Path(test_path), model_dir=model_dir,
                              start_path=None if start_path is None else Path(start_path))
        rec = _checked(rec, test_path, ident)
        write_reconstruction(out_path, rec)
        return rec
    except PtychoError as exc:
        raise PtychoError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- whatever the arm raises fails it in one line
        raise PtychoError(f"{where} failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                          ) from None
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def _checked(rec, test_path, ident: ArmIdentity) -> Reconstruction:
    """The arm's result as the study's reconstruction: a Reconstruction of the split's object
    grid, finite, recorded under the arm's id."""
    from ptycho.data.dataset import Dataset

    if not isinstance(rec, Reconstruction):
        raise PtychoError(f"reconstruct() returned {type(rec).__name__}, expected a "
                          "ptycho.reconstruct.io.Reconstruction")
    with Dataset(test_path, require_object=False) as ds:
        shape = tuple(ds.object_shape)
    obj = np.asarray(rec.object)
    if obj.shape != shape:
        raise PtychoError(f"object of shape {obj.shape}, expected the test split's object grid "
                          f"{shape}")
    if not np.all(np.isfinite(obj)):
        raise PtychoError("the reconstructed object contains NaN or inf")
    rec.arm = ident.name
    rec.gridsize = ident.gridsize
    return rec
