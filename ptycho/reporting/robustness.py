"""Robustness to model errors (docs/robustness.md): each arm's SSIM against the error level of each
error kind, and its loss against its own score in the exact cell.

Inputs are the rows of ``metrics.csv`` with the error columns
(:func:`ptycho.reporting.records.read_metrics_csv` with ``levels=True``). The exact cell (level
``exact``) is level 0 of every kind. For each (kind, arm, dose, overlap, quantity):

- :func:`level_curves`: the SSIM at every level, with its interval (one replicate: the block
  bootstrap interval of ``metrics.csv``; several: the mean and the t interval of the replicates);
- :func:`level_losses`: ``loss = exact - level`` (positive: the arm lost quality), with a paired
  interval: several replicates, the paired t interval of the per-replicate differences; one
  replicate, the paired block bootstrap of the two metrics files when they were scored on the same
  blocks and draws (:func:`paired_intervals`), none otherwise.
"""

from __future__ import annotations

import csv
import io
import math

from ptycho.config import dose_label
from ptycho.data.io import write_text
from ptycho.reporting import arm_sort_key
from ptycho.reporting.uncertainty import CONFIDENCE, t_interval

QUANTITIES = ("amplitude", "phase")
EXACT = "exact"
KIND_AXIS = {"probe": "relative probe error of the nominal probe",
             "positions": "position jitter (RMS, px)",
             "coherence": "1 - power fraction of the first mode"}
LOSS_COLUMNS = ("kind", "error_level", "error_value", "arm", "dose", "overlap", "quantity",
                "metric", "exact", "value", "loss", "loss_low", "loss_high", "n_replicates",
                "method", "data_probe_error", "data_position_rms_px", "arm_probe_error",
                "arm_position_rms_px", "arm_refined")


def _key(r) -> tuple:
    return (r["arm"], float(r["dose"]), r["overlap"], r["quantity"])


def _levels(rows, kind: str) -> list[tuple[str, float]]:
    """(label, value) of the levels of ``kind``, ascending, the exact cell first."""
    seen = {(r["error_level"], float(r["error_value"])) for r in rows if r["error_kind"] == kind}
    return [(EXACT, 0.0)] + sorted(seen, key=lambda lv: (lv[1], lv[0]))


def error_kinds(rows) -> list[str]:
    order = ("probe", "positions", "coherence")
    kinds = {r["error_kind"] for r in rows if r.get("error_kind")}
    return sorted(kinds, key=lambda k: (order.index(k) if k in order else 9, k))


def _select(rows, metric: str):
    return [r for r in rows if r["metric"] == metric and r["quantity"] in QUANTITIES]


def _estimate(reps: list[dict], confidence: float) -> tuple[float, float, float, int]:
    """(value, low, high, n) of one level of one arm and cell over its replicates."""
    if len(reps) == 1:
        r = reps[0]
        return float(r["value"]), float(r["ci_low"]), float(r["ci_high"]), 1
    mean, _, lo, hi = t_interval([float(r["value"]) for r in reps], confidence)
    return mean, lo, hi, len(reps)


def level_curves(rows, metric: str = "ssim", confidence: float = CONFIDENCE) -> dict:
    """{kind: {(arm, dose, overlap, quantity): [(level, value, estimate, low, high, n), ...]}}
    over the levels of each kind (the exact cell first, value 0)."""
    rows = _select(rows, metric)
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["error_level"],) + _key(r), []).append(r)
    out: dict[str, dict] = {}
    for kind in error_kinds(rows):
        curves: dict[tuple, list] = {}
        for label, value in _levels(rows, kind):
            for k, reps in by.items():
                if k[0] != label:
                    continue
                est, lo, hi, n = _estimate(reps, confidence)
                curves.setdefault(k[1:], []).append((label, value, est, lo, hi, n))
        out[kind] = {k: v for k, v in curves.items() if len(v) > 1}
    return out


def level_losses(rows, metric: str = "ssim", paired: dict | None = None,
                 confidence: float = CONFIDENCE) -> list[dict]:
    """Each arm's loss against its exact-cell score at every error level (``LOSS_COLUMNS``).

    ``paired``: {(error level, arm, dose, overlap, quantity, metric): (low, high)} of one-replicate
    cells (:func:`paired_intervals`); without one a one-replicate loss has no interval."""
    rows = _select(rows, metric)
    exact: dict[tuple, dict[int, dict]] = {}
    levels: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        if r["error_level"] == EXACT:
            exact.setdefault(_key(r), {})[int(r["replicate"])] = r
        else:
            levels.setdefault((r["error_kind"], r["error_level"]) + _key(r), {})[
                int(r["replicate"])] = r
    out = []
    for k, reps in levels.items():
        kind, label, arm, dose, overlap, q = k
        ref = exact.get((arm, dose, overlap, q), {})
        common = sorted(set(reps) & set(ref))
        if not common:
            continue
        diffs = [float(ref[i]["value"]) - float(reps[i]["value"]) for i in common]
        if len(common) > 1:
            loss, _, lo, hi = t_interval(diffs, confidence)
            method = "paired t over replicates"
        else:
            loss = diffs[0]
            lo, hi = (paired or {}).get((label, arm, dose, overlap, q, metric), (math.nan, math.nan))
            method = "paired block bootstrap" if math.isfinite(lo) else "none"
        first = reps[common[0]]
        out.append({
            "kind": kind, "error_level": label, "error_value": float(first["error_value"]),
            "arm": arm, "dose": dose, "overlap": overlap, "quantity": q, "metric": metric,
            "exact": _mean([ref[i] for i in common], "value"),
            "value": _mean([reps[i] for i in common], "value"),
            "loss": float(loss), "loss_low": float(lo), "loss_high": float(hi),
            "n_replicates": len(common), "method": method,
            **{c: _mean([reps[i] for i in common], c) for c in
               ("data_probe_error", "data_position_rms_px", "arm_probe_error",
                "arm_position_rms_px")},
            "arm_refined": _refined([reps[i] for i in common]),
        })
    order = {k: i for i, k in enumerate(error_kinds(rows))}
    out.sort(key=lambda e: (order.get(e["kind"], 9), e["error_value"], e["dose"], e["overlap"],
                            arm_sort_key(e["arm"]), QUANTITIES.index(e["quantity"])))
    return out


def _refined(rows) -> str:
    """What an arm refined at a level (``probe``, ``positions``, ``probe+positions``, empty):
    the union over its replicates (they share one setting)."""
    parts = {p for r in rows for p in str(r.get("arm_refined") or "").split("+") if p}
    return "+".join(k for k in ("probe", "positions") if k in parts)


def _mean(rows, column: str) -> float:
    return sum(float(r[column]) for r in rows) / len(rows)


def paired_intervals(records, metric: str = "ssim") -> dict:
    """Paired block-bootstrap intervals of ``exact - level`` for one arm, cell and replicate
    (metrics records of the exact cells and of the error levels): {(error level, arm, dose,
    overlap, quantity, metric): (low, high)}; a pair scored on other blocks or draws has none."""
    from ptycho.evaluation.intervals import paired_difference_interval
    from ptycho.reporting.records import record_level

    exact, others = {}, []
    for m in records:
        key = (str(m.arm), float(m.dose), str(m.overlap_view), int(m.replicate))
        if record_level(m) == EXACT:
            exact[key] = m
        else:
            others.append((key, m))
    out = {}
    for key, m in others:
        ref = exact.get(key)
        if ref is None or ref.bootstrap is None or m.bootstrap is None:
            continue
        for q in QUANTITIES:
            try:
                _, (lo, hi) = paired_difference_interval(ref.bootstrap, m.bootstrap, q, metric)
            except Exception:  # noqa: BLE001, S112 - not the same blocks: no paired interval
                continue
            out[(record_level(m), key[0], key[1], key[2], q, metric)] = (float(lo), float(hi))
    return out


def _fmt(v) -> str:
    return "" if v is None or not math.isfinite(float(v)) else repr(float(v))


def write_losses_csv(losses, path) -> None:
    """``robustness.csv``: one row per (error level, arm, cell, quantity), ``LOSS_COLUMNS``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOSS_COLUMNS)
    for e in losses:
        w.writerow([e[c] if isinstance(e[c], str) or c == "n_replicates" else _fmt(e[c])
                    for c in LOSS_COLUMNS])
    write_text(path, buf.getvalue())


def read_losses_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for c in LOSS_COLUMNS:
            if c in ("kind", "error_level", "arm", "overlap", "quantity", "metric", "method",
                     "arm_refined"):
                r.setdefault(c, "")
                continue
            r[c] = int(r[c]) if c == "n_replicates" else (float(r[c]) if r[c] != "" else math.nan)
    return rows


def losses_markdown(losses, confidence: float = CONFIDENCE) -> list[str]:
    """The summary's section: each arm's SSIM loss against its exact-cell score."""
    if not losses:
        return []
    lines = ["## Robustness to model errors", "",
             ("Each arm's SSIM in the cell at an error level against its own SSIM in the exact "
             "cell (the same dose, overlap and replicate; the arms are told the nominal probe and "
             "positions): loss = exact - level, positive where the arm lost quality, with its "
             f"paired {round(confidence * 100)}% interval where there is one. `data error`: what "
             "the nominal inputs are off by; `arm error`: what an arm that refined them ended "
             "with; `refined`: what the arm refined (its final probe and positions are stored "
             "with its reconstruction, hashed in the artifact inventory)."), "",
             ("| error level | dose | overlap | arm | quantity | exact | at level | loss | "
              "data error | arm error | refined |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in losses:
        ci = (f" [{e['loss_low']:+.3f}, {e['loss_high']:+.3f}]"
              if math.isfinite(e["loss_low"]) and math.isfinite(e["loss_high"]) else "")
        if e["kind"] == "positions":
            data, arm = e["data_position_rms_px"], e["arm_position_rms_px"]
            unit = " px"
        else:
            data, arm = e["data_probe_error"], e["arm_probe_error"]
            unit = ""
        arm_txt = f"{arm:.3g}{unit}" if math.isfinite(arm) else "not refined"
        data_txt = f"{data:.3g}{unit}" if math.isfinite(data) else ""
        lines.append(f"| {e['error_level']} | {dose_label(e['dose'])} | {e['overlap']} | "
                     f"{e['arm']} | {e['quantity']} | {e['exact']:.3f} | {e['value']:.3f} | "
                     f"{e['loss']:+.3f}{ci} | {data_txt} | {arm_txt} | "
                     f"{e.get('arm_refined') or 'nothing'} |")
    return lines + [""]


def plot_level_curves(rows, kind: str, png, metric: str = "ssim",
                      confidence: float = CONFIDENCE) -> None:
    """SSIM (amplitude, phase: the rows of panels) against the level of ``kind`` (x), one panel
    column per (dose, overlap) cell, one line per arm with its interval as error bars."""
    from ptycho.reporting._figures import (
        arm_colour,
        arm_style,
        legend_columns,
        message_figure,
        pyplot,
        save,
    )

    curves = level_curves(rows, metric, confidence).get(kind) or {}
    if not curves:
        message_figure(png, f"{metric.upper()} against {kind} error",
                       f"no cells at a {kind} error level with an exact cell to compare")
        return
    plt = pyplot()
    cells = sorted({(k[1], k[2]) for k in curves})
    arms = sorted({k[0] for k in curves}, key=arm_sort_key)
    width = max(5.0, 4.2 * len(cells))
    fig, axes = plt.subplots(len(QUANTITIES), len(cells), squeeze=False, sharex=True,
                             figsize=(width, 7.0), constrained_layout=True)
    for j, (dose, overlap) in enumerate(cells):
        for i, q in enumerate(QUANTITIES):
            ax = axes[i][j]
            for a in arms:
                pts = curves.get((a, dose, overlap, q))
                if not pts:
                    continue
                x = [p[1] for p in pts]
                y = [p[2] for p in pts]
                lo = [p[2] - p[3] if math.isfinite(p[3]) else 0.0 for p in pts]
                hi = [p[4] - p[2] if math.isfinite(p[4]) else 0.0 for p in pts]
                ax.errorbar(x, y, yerr=[lo, hi], color=arm_colour(a, arms), capsize=3,
                            label=a, **arm_style(a))
            ax.set_title(f"{q}, dose {dose_label(dose)}, {overlap}", fontsize=10)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{q} {metric.upper()}")
            if i == len(QUANTITIES) - 1:
                ax.set_xlabel(KIND_AXIS.get(kind, f"{kind} error"))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center",
               ncol=legend_columns(len(labels), width, 1.6))
    sep = "\n" if len(cells) == 1 else " "  # a one-cell figure is too narrow for one line
    fig.suptitle(f"{metric.upper()} against {kind} error{sep}(0: the exact cell; bars: "
                 f"{round(confidence * 100)}% intervals)")
    save(fig, png)


__all__ = ["LOSS_COLUMNS", "error_kinds", "level_curves", "level_losses", "losses_markdown",
           "paired_intervals", "plot_level_curves", "read_losses_csv", "write_losses_csv"]
