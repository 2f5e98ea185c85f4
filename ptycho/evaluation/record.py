"""The metrics record of one evaluated reconstruction: what ``metrics.json`` holds, as a typed
dataclass. Evaluation builds one and writes it (:func:`write_metrics`); reporting reads every file
once (:func:`read_metrics`) and hands the records down.

The keys (:func:`ptycho.evaluation.evaluate.evaluate_reconstruction` documents their content):
``arm``, ``gridsize``, ``dose``, ``overlap_view`` and ``metrics`` (quantity -> metric -> value)
are required of every file the report reads; the others may be missing in a file written by
another version or by hand, and are None then (``replicate`` 0 and ``ground_truth`` True, the
meaning of a file written before those keys existed). :meth:`MetricsRecord.to_json` writes every
field that is not None, and keys this version does not know are kept (``extra``), so a file read
and written again keeps its content.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ptycho.data.io import read_json, write_json
from ptycho.errors import PtychoError

REQUIRED_KEYS = ("arm", "gridsize", "dose", "overlap_view", "metrics")


@dataclass
class MetricsRecord:
    """One ``metrics.json``: identification (arm, gridsize, dose, overlap view, replicate), the
    scores (``metrics``, ``intervals``, ``frc`` curves, ``snapshots`` of a solver arm), what they
    were scored on (region, alignment, references, fluence, bootstrap record) and the
    reconstruction they score (wall time, info, paths). ``path``: the file it was read from (not
    written)."""

    arm: str
    gridsize: int
    dose: float
    overlap_view: str
    metrics: dict
    replicate: int = 0
    ground_truth: bool = True
    dose_label: str | None = None
    region_pixels: int | None = None
    alignment: dict | None = None
    frc: dict | None = None
    recon_wall_time_s: float | None = None
    recon_info: dict | None = None
    recon_path: str | None = None
    test_path: str | None = None
    reference: dict | None = None
    evaluation: dict | None = None
    ground_truth_free_metrics: list | None = None
    data_residual: dict | None = None
    fluence: dict | None = None
    intervals: dict | None = None
    bootstrap: dict | None = None
    frc_limits: dict | None = None
    snapshots: list | None = None
    frc_halves: dict | None = None
    halves: dict | None = None
    extra: dict = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        """The ``metrics.json`` content: every field that is not None, and the unknown keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in _NOT_WRITTEN and getattr(self, f.name) is not None}
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: dict, path=None) -> MetricsRecord:
        """A record of a ``metrics.json`` dict; ``PtychoError`` naming ``path`` when a required
        key is missing or ``metrics`` is not a mapping."""
        where = path if path is not None else "metrics record"
        if not isinstance(data, dict):
            raise PtychoError(f"{where}: a metrics file holds a JSON object, got "
                              f"{type(data).__name__}")
        for key in REQUIRED_KEYS:
            if key not in data:
                raise PtychoError(f"{where}: missing key '{key}'")
        if not isinstance(data["metrics"], dict):
            raise PtychoError(f"{where}: 'metrics' must be a mapping quantity -> metric -> value")
        known = {k: v for k, v in data.items() if k in _FIELDS}
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(**known, extra=extra, path=None if path is None else str(path))

    def cell(self) -> tuple[float, str, int]:
        """(dose, overlap view, replicate): the cell replicate this record scores."""
        return float(self.dose), str(self.overlap_view), int(self.replicate)


_NOT_WRITTEN = ("extra", "path")
_FIELDS = {f.name for f in fields(MetricsRecord)} - set(_NOT_WRITTEN)


def read_metrics(path) -> MetricsRecord:
    """Load one ``metrics.json`` and check the keys the report relies on (``PtychoError`` naming
    the file when it is missing, not JSON, or lacks a required key)."""
    path = Path(path)
    return MetricsRecord.from_json(read_json(path, "metrics file"), path)


def write_metrics(path, record: MetricsRecord) -> None:
    """Write ``record`` as ``metrics.json`` (strict JSON, sorted keys, atomically;
    :func:`ptycho.data.io.write_json`)."""
    write_json(path, record.to_json())


__all__ = ["REQUIRED_KEYS", "MetricsRecord", "read_metrics", "write_metrics"]
