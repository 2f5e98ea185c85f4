"""The report's records: every ``metrics.json`` of a job read once (:func:`load_records`), the tidy
rows they become (:func:`collect_metrics`), the flat-object references and reconstruction times of
the cells, and the tables the report writes and reads back (``metrics.csv``, a training
``history.csv``).

``metrics.csv`` has exactly the columns
``study,scale,dose,overlap,gridsize,arm,quantity,metric,value,replicate,fluence,ci_low,ci_high``:
one row per (cell, replicate, arm, quantity, metric). ``dose`` is the incident dose in photons per
exposure, ``overlap`` the overlap view name (e.g. ``dense``), ``quantity`` is ``amplitude``,
``phase`` or ``complex``, ``value`` the metric of that replicate. A value that is not finite is
written as ``nan`` so the verification can name it. ``replicate`` is the cell replicate (0 ..
R - 1), ``fluence`` the mean incident photons per object pixel over the evaluation region, and
``ci_low``/``ci_high`` the value's confidence interval (``intervals`` of ``metrics.json``: block
bootstrap, or for FRC the ring-correlation interval), empty where the metric has none.

A study with model-error levels (``errors``, docs/robustness.md) adds the columns
``ERROR_COLUMNS`` after these, and rows for the cells at each error level: ``error_level`` (the
level label, ``exact`` for the exact cell), ``error_kind`` (``probe``, ``positions``,
``coherence``; empty for the exact cell), ``error_value`` (the requested level: relative probe
error, jitter in pixels, or 1 - the first mode's power fraction; 0 exact), ``data_probe_error`` and
``data_position_rms_px`` (what the cell's nominal probe and positions are off by: recorded against
the truth), ``arm_probe_error`` and ``arm_position_rms_px`` (the arm's final probe error and position
RMS error, only where it refined the probe or the positions) and ``arm_refined`` (what the arm
refined: ``probe``, ``positions``, ``probe+positions``, empty for nothing). A study without error
levels in which some arm refines something (its metrics carry a ``model_errors`` block) writes
these columns too, every row at level ``exact``; a study whose arms refine nothing and that has no
error levels writes the table above, unchanged.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ptycho.data.io import write_text
from ptycho.errors import PtychoError
from ptycho.evaluation.record import MetricsRecord, read_metrics
from ptycho.reporting import REQUIRED_METRICS

CSV_COLUMNS = ("study", "scale", "dose", "overlap", "gridsize", "arm", "quantity", "metric", "value",
               "replicate", "fluence", "ci_low", "ci_high")
_NUMBER_OR_EMPTY = ("fluence", "ci_low", "ci_high")
ERROR_COLUMNS = ("error_level", "error_kind", "error_value", "data_probe_error",
                 "data_position_rms_px", "arm_probe_error", "arm_position_rms_px", "arm_refined")
_ERROR_NUMBERS = ERROR_COLUMNS[2:7]
# the error columns of tables written before ``arm_refined`` existed (still read)
_ERROR_COLUMNS_V1 = ERROR_COLUMNS[:7]
EXACT_LEVEL = "exact"
_QUANTITY_ORDER = ("amplitude", "phase", "complex")


def _metric_order(quantity: str, metric: str) -> tuple:
    known = REQUIRED_METRICS.get(quantity, ())
    return (known.index(metric), metric) if metric in known else (len(known), metric)


def load_records(metric_paths) -> list[MetricsRecord]:
    """Every ``metrics.json`` of ``metric_paths``, read once, in order
    (:func:`ptycho.evaluation.record.read_metrics`: ``PtychoError`` naming a file that is missing,
    not JSON or lacks a key the report relies on)."""
    return [read_metrics(p) for p in metric_paths]


def collect_metrics(records, study_name: str, scale: str) -> list[dict]:
    """Tidy rows from metrics records (:func:`load_records`), in the order of ``records``.

    Each row is a dict with the keys of ``CSV_COLUMNS``; ``dose`` is a float (photons per
    exposure), ``gridsize`` and ``replicate`` ints, ``value`` a float (NaN kept as NaN for the
    verification), ``fluence``, ``ci_low`` and ``ci_high`` floats (NaN where absent).
    """
    rows = []
    for m in records:
        path = m.path
        errors = error_fields(m)
        fluence = (m.fluence or {}).get("photons_per_px")
        intervals = m.intervals or {}
        quantities = sorted(m.metrics, key=lambda q: (_QUANTITY_ORDER.index(q)
                                                      if q in _QUANTITY_ORDER else 9, q))
        for q in quantities:
            values = m.metrics[q]
            if not isinstance(values, dict):
                raise PtychoError(f"{path}: metrics/{q} must be a mapping metric -> value")
            for name in sorted(values, key=lambda k: _metric_order(q, k)):
                v = values[name]
                try:
                    v = float("nan") if v is None else float(v)
                except (TypeError, ValueError) as exc:
                    raise PtychoError(f"{path}: metrics/{q}/{name} = {v!r} is not a number") from exc
                ci = (intervals.get(q) or {}).get(name) or (math.nan, math.nan)
                rows.append({
                    "study": study_name, "scale": scale, "dose": float(m.dose),
                    "overlap": str(m.overlap_view), "gridsize": int(m.gridsize),
                    "arm": str(m.arm), "quantity": q, "metric": name, "value": v,
                    "replicate": int(m.replicate),
                    "fluence": math.nan if fluence is None else float(fluence),
                    "ci_low": _number(ci[0]), "ci_high": _number(ci[1]),
                    **errors,
                })
    return rows


def record_level(m) -> str:
    """The error-level label of a metrics record (``exact`` for a cell without model errors)."""
    block = (m.extra or {}).get("model_errors") or {}
    return block.get("error_level") or EXACT_LEVEL


def error_fields(m) -> dict:
    """The ``ERROR_COLUMNS`` of a metrics record's rows (its ``model_errors`` block; the exact
    cell's nominal inputs are the true ones, so its data errors are 0; without ground truth they
    are unknown, empty)."""
    block = (m.extra or {}).get("model_errors") or {}
    level = block.get("error_level") or EXACT_LEVEL
    exact = level == EXACT_LEVEL
    # the exact cell's nominal inputs are the true ones, as far as a truth is known
    true_inputs = exact and getattr(m, "ground_truth", True)
    refined = block.get("refined") or []
    return {
        "error_level": level,
        "error_kind": "" if exact else str(block.get("error_kind") or ""),
        "error_value": 0.0 if exact else _number(block.get("error_value")),
        "data_probe_error": 0.0 if true_inputs and block.get("nominal_probe_error") is None
        else _number(block.get("nominal_probe_error")),
        "data_position_rms_px": 0.0 if true_inputs and block.get("nominal_position_rms_px") is None
        else _number(block.get("nominal_position_rms_px")),
        "arm_probe_error": _number(block.get("probe_error")) if "probe" in refined else math.nan,
        "arm_position_rms_px": _number(block.get("position_rms_px")) if "positions" in refined
        else math.nan,
        "arm_refined": refined_label(refined),
    }


def refined_label(refined) -> str:
    """``probe``, ``positions``, ``probe+positions`` or empty: what an arm refined (the
    ``refined`` list of its ``model_errors`` block)."""
    return "+".join(k for k in ("probe", "positions") if k in (refined or []))


def any_refined(records) -> bool:
    """True when some metrics record's arm refined its probe or positions (its ``model_errors``
    block lists what): metrics.csv then carries the error columns even without error levels."""
    return any(((m.extra or {}).get("model_errors") or {}).get("refined") for m in records)


def collect_references(records) -> dict:
    """{(dose, overlap view): flat-object metrics} from the ``reference`` block of metrics records
    (every arm of a cell carries the same one; the first is kept)."""
    refs = {}
    for m in records:
        flat = (m.reference or {}).get("flat_object")
        key = (float(m.dose), str(m.overlap_view))
        if isinstance(flat, dict) and key not in refs:
            refs[key] = flat
    return refs


def _number(v) -> float:
    """A float, NaN for None (JSON's null) or anything that is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fmt_value(v: float) -> str:
    return "nan" if not math.isfinite(v) else repr(float(v))


def _fmt_optional(v) -> str:
    """A number, or an empty cell where there is none (no interval, no fluence)."""
    return "" if v is None or not math.isfinite(float(v)) else repr(float(v))


def write_metrics_csv(rows, path, errors: bool = False) -> None:
    """Write the tidy table with exactly ``CSV_COLUMNS`` (atomically); ``errors``: a study with
    model-error levels, with ``ERROR_COLUMNS`` after them."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS + (ERROR_COLUMNS if errors else ()))
    for r in rows:
        extra = []
        if errors:
            extra = [r.get("error_level") or EXACT_LEVEL, r.get("error_kind") or ""] + [
                _fmt_optional(r.get(k)) for k in _ERROR_NUMBERS] + [r.get("arm_refined") or ""]
        w.writerow([r["study"], r["scale"], repr(float(r["dose"])), r["overlap"], int(r["gridsize"]),
                    r["arm"], r["quantity"], r["metric"], _fmt_value(float(r["value"])),
                    int(r.get("replicate", 0))]
                   + [_fmt_optional(r.get(k)) for k in _NUMBER_OR_EMPTY] + extra)
    write_text(path, buf.getvalue())


def read_metrics_csv(path, levels: bool = False) -> list[dict]:
    """Rows of ``metrics.csv`` with ``dose``, ``value``, ``fluence``, ``ci_low`` and ``ci_high``
    as float (an empty cell is NaN) and ``gridsize`` and ``replicate`` as int.

    A table with ``ERROR_COLUMNS`` (a study with model-error levels): the rows of the exact cells
    only, unless ``levels`` (then every row, with the error columns, numbers as float)."""
    path = Path(path)
    if not path.is_file():
        raise PtychoError(f"{path}: metrics table not found")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        names = tuple(reader.fieldnames or ())
        if names not in (CSV_COLUMNS, CSV_COLUMNS + ERROR_COLUMNS,
                         CSV_COLUMNS + _ERROR_COLUMNS_V1):
            raise PtychoError(f"{path}: columns {reader.fieldnames}, expected {list(CSV_COLUMNS)}"
                              f" (and {list(ERROR_COLUMNS)} with model-error levels)")
        has_errors = names != CSV_COLUMNS
        rows = []
        for i, r in enumerate(reader, start=2):
            try:
                r["dose"] = float(r["dose"])
                r["gridsize"] = int(r["gridsize"])
                r["value"] = float(r["value"])
                r["replicate"] = int(r["replicate"])
                for k in _NUMBER_OR_EMPTY:
                    r[k] = float(r[k]) if r[k] != "" else math.nan
                if has_errors:
                    for k in _ERROR_NUMBERS:
                        r[k] = float(r[k]) if r[k] != "" else math.nan
                    r.setdefault("arm_refined", "")
            except (TypeError, ValueError) as exc:
                raise PtychoError(f"{path}, line {i}: {exc}") from exc
            if has_errors and not levels:
                if r["error_level"] != EXACT_LEVEL:
                    continue
                for k in ERROR_COLUMNS:
                    r.pop(k, None)
            rows.append(r)
    return rows


def read_history(path) -> dict[str, list[float]]:
    """Columns of a training ``history.csv`` (epoch, loss, val_loss, lr) as float lists; an empty
    or missing entry becomes NaN. Raises PtychoError if the file or its ``loss`` column is absent."""
    path = Path(path)
    if not path.is_file():
        raise PtychoError(f"{path}: training history not found")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        names = [c.strip() for c in (reader.fieldnames or [])]
        if "loss" not in names:
            raise PtychoError(f"{path}: no 'loss' column (columns: {names})")
        cols: dict[str, list[float]] = {c: [] for c in names}
        for r in reader:
            for raw_key, v in r.items():
                if raw_key is None:
                    continue
                try:
                    x = float(v) if v not in (None, "") else float("nan")
                except ValueError:
                    x = float("nan")
                cols[raw_key.strip()].append(x)
    if "epoch" not in cols:
        cols["epoch"] = [float(i) for i in range(len(cols["loss"]))]
    return cols


def collect_timing(records) -> list[dict]:
    """Per cell and arm of metrics records: reconstruction wall time (s) and the recorded iteration
    budget, if any."""
    out = []
    for m in records:
        info = m.recon_info or {}
        t = m.recon_wall_time_s
        out.append({
            "dose": float(m.dose), "overlap": str(m.overlap_view), "arm": str(m.arm),
            "recon_wall_time_s": None if t is None else float(t),
            "iterations": info.get("iterations") if isinstance(info, dict) else None,
        })
    return out


__all__ = [
    "CSV_COLUMNS",
    "ERROR_COLUMNS",
    "EXACT_LEVEL",
    "any_refined",
    "collect_metrics",
    "collect_references",
    "collect_timing",
    "error_fields",
    "load_records",
    "read_history",
    "read_metrics_csv",
    "record_level",
    "refined_label",
    "write_metrics_csv",
]
