"""The interface of a reconstruction arm.

An arm declares what it reads (:attr:`Arm.reads`: the test split always; the train split, its
ground-truth labels, another arm's reconstruction), its settings (:attr:`Arm.settings_schema`, a
JSON schema checked with the study before any job, or its own :meth:`Arm.validate`) and what it
does: :meth:`Arm.train` (when :attr:`Arm.trains`) into a model directory, and
:meth:`Arm.reconstruct`, which returns a :class:`~ptycho.reconstruct.io.Reconstruction` of the
test split on its object grid. The caller (:func:`ptycho.arms.registry.run_arm`) checks it and
writes the reconstruction file every arm writes, under the arm's id.

A minimal arm::

    class Backprop(Arm):
        settings_schema = {"type": "object", "properties": {"gain": {"type": "number"}}}

        def reconstruct(self, test_path, *, model_dir=None, start_path=None):
            with self.open_test(test_path) as ds:
                obj = ...                                # (H, W) complex on ds.object_shape
            return self.result(test_path, obj, wall_time_s=...)
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ptycho.arms.spec import ArmIdentity
from ptycho.config import StudyConfig, validate_with_defaults
from ptycho.data.dataset import Dataset
from ptycho.errors import ConfigError
from ptycho.reconstruct.io import Reconstruction

# what an arm may read
READS = ("train", "test", "labels", "start")


@dataclass(frozen=True)
class ArmContext:
    """Where an arm runs: the study, the scale, its identity, its validated settings, the
    overlap view of the cell, the cell replicate and the threads it may use."""

    study: StudyConfig
    scale: str
    identity: ArmIdentity
    settings: dict
    overlap: str | None = None
    replicate: int = 0
    threads: int = 1


class Arm:
    """Base class of every arm (built-in, plugin, external command)."""

    reads: ClassVar[tuple[str, ...]] = ("test",)
    """What the arm reads: 'test' (always), 'train' (the train split's counts, positions and
    probe), 'labels' (the train split's ground-truth object; refused in a study without ground
    truth), 'start' (the study's hybrid start arm's reconstruction of the test split)."""
    trains: ClassVar[bool] = False
    """True: :meth:`train` runs first, into the cell's model directory."""
    settings_schema: ClassVar[dict | None] = None
    """JSON schema of the settings (None: any mapping). Defaults it declares are filled in."""

    def __init__(self, context: ArmContext):
        self.context = context
        self.settings = context.settings

    # ------------------------------------------------------------ declared
    @classmethod
    def validate(cls, settings: dict, where: str) -> dict:
        """The checked settings (defaults filled); ConfigError naming ``where/<key>``."""
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(settings).__name__}")
        if cls.settings_schema is None:
            return copy.deepcopy(settings)
        known = cls.settings_schema.get("properties")
        if known is not None and cls.settings_schema.get("additionalProperties") is False:
            for key in settings:
                if key not in known:
                    raise ConfigError(f"{where}/{key}: unknown setting (expected one of "
                                      f"{sorted(known)})")
        try:
            return validate_with_defaults(settings, cls.settings_schema, "")
        except ConfigError as exc:
            m = re.match(r": invalid value at '(.*?)': (.*)", str(exc), re.DOTALL)
            if m is None:
                raise ConfigError(f"{where}{exc}") from None
            key = "" if m[1] == "<top level>" else f"/{m[1]}"
            raise ConfigError(f"{where}{key}: {m[2]}") from None

    @classmethod
    def check_reads(cls, where: str) -> tuple[str, ...]:
        reads = tuple(cls.reads)
        bad = [r for r in reads if r not in READS]
        if bad or "test" not in reads:
            raise ConfigError(f"{where}: 'reads' is {list(reads)}; expected 'test' and any of "
                              f"{list(READS)}")
        return reads

    # ------------------------------------------------------------ what it does
    def train(self, train_path: Path, model_dir: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} declares trains = True but has no train()")

    def reconstruct(self, test_path: Path, *, model_dir: Path | None = None,
                    start_path: Path | None = None) -> Reconstruction:
        raise NotImplementedError(f"{type(self).__name__} has no reconstruct()")

    # ------------------------------------------------------------ helpers
    @property
    def name(self) -> str:
        return self.context.identity.name

    @staticmethod
    @contextlib.contextmanager
    def open_test(test_path):
        """The test split (:class:`ptycho.data.dataset.Dataset`: counts through ``iter_batches``,
        ``positions``, ``probe``, ``dose``, ``object_shape``). Its ``/object``, where there is one,
        is the ground truth the evaluation scores against: an arm never reads it."""
        with Dataset(test_path, require_object=False) as ds:
            yield ds

    def result(self, test_path, obj, *, wall_time_s: float, weight=None, info: dict | None = None,
               probe=None, positions=None) -> Reconstruction:
        """A reconstruction of ``test_path`` holding ``obj`` (complex (H, W) on the split's object
        grid): its weight map (default: the summed probe intensity of the scan), dose, pattern
        count and overlap view from the split."""
        from ptycho.physics.illumination import illumination_map

        with Dataset(test_path, require_object=False) as ds:
            shape, n, dose = tuple(ds.object_shape), ds.n, ds.dose
            view = self.context.overlap or str(ds.config.get("overlap_view", ""))
            if weight is None:
                weight = illumination_map(shape, ds.positions, ds.probe)
        obj = np.asarray(obj)
        return Reconstruction(object=obj, weight=np.asarray(weight, dtype=np.float32),
                              arm=self.name, gridsize=self.context.identity.gridsize, dose=dose,
                              overlap_view=view, n_patterns=n, wall_time_s=float(wall_time_s),
                              source=str(test_path), info=dict(info or {}), probe=probe,
                              positions=positions)


def settings_of(study: StudyConfig, arm_id: str) -> dict[str, Any]:
    """The raw settings of an arm id: a variant's ``settings``, {} for a built-in arm."""
    for v in study.variants:
        if v.name == arm_id:
            return dict(v.settings)
    return {}
