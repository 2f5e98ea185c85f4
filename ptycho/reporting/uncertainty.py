"""Uncertainty in the report: replicate means and spreads, confidence intervals, paired differences
between arms, fluence per cell and the equal-fluence view.

- One replicate (R = 1): a number's interval is its spatial block bootstrap interval (or, for FRC,
  the ring-correlation interval) from ``metrics.json`` (``ptycho.evaluation.intervals``).
- R > 1: a number is the mean over the replicates, its spread their standard deviation, and its
  interval the Student-t interval of the mean (``confidence``, R - 1 degrees of freedom): the
  replicates differ in noise, grouping and training, so this is the variation a rerun would show.
- Paired differences between two arms of one cell: with R = 1 both arms are resampled with the
  same blocks (paired block bootstrap); with R > 1 the per-replicate differences give a paired
  t interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ptycho.config import dose_label
from ptycho.reporting import arm_sort_key

CONFIDENCE = 0.95
PAIRED_METRICS = (("amplitude", "ssim"), ("phase", "ssim"), ("amplitude", "mae"), ("phase", "mae"))


@dataclass(frozen=True)
class Estimate:
    """One reported number: ``value`` (the mean over ``n`` replicates), ``low``/``high`` (its
    interval, NaN where there is none) and ``sd`` (spread across replicates, NaN for n = 1)."""

    value: float
    low: float
    high: float
    sd: float
    n: int

    def text(self, fmt: str) -> str:
        """``0.412 ± 0.013`` (n > 1: mean ± sd), ``0.412 [0.398, 0.425]`` (n = 1 with an
        interval) or ``0.412``; ``**nan**`` for a value that is not finite."""
        if not math.isfinite(self.value):
            return "**nan**"
        v = format(self.value, fmt)
        if self.n > 1 and math.isfinite(self.sd):
            return f"{v} ± {format(self.sd, fmt)}"
        if math.isfinite(self.low) and math.isfinite(self.high):
            return f"{v} [{format(self.low, fmt)}, {format(self.high, fmt)}]"
        return v


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of a sample: the Student-t interval of its mean (NaN for n < 2)."""
    from scipy.stats import t as student

    x = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(x))
    if x.size < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(np.std(x, ddof=1))
    half = float(student.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return mean, sd, mean - half, mean + half


def summarise_replicates(rows, confidence: float = CONFIDENCE) -> dict:
    """``{(dose, overlap, arm, quantity, metric): Estimate}`` over the replicates of tidy rows
    (``read_metrics_csv`` / ``collect_metrics``); a row without a replicate is replicate 0."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        key = (float(r["dose"]), r["overlap"], r["arm"], r["quantity"], r["metric"])
        groups.setdefault(key, {})[int(r.get("replicate", 0))] = r
    out = {}
    for key, reps in groups.items():
        if len(reps) == 1:
            (r,) = reps.values()
            out[key] = Estimate(float(r["value"]), float(r.get("ci_low", math.nan)),
                                float(r.get("ci_high", math.nan)), math.nan, 1)
        else:
            mean, sd, lo, hi = t_interval([float(r["value"]) for r in reps.values()], confidence)
            out[key] = Estimate(mean, lo, hi, sd, len(reps))
    return out


def replicate_counts(rows) -> set[int]:
    """The numbers of replicates the cells of tidy rows hold."""
    reps: dict[tuple, set] = {}
    for r in rows:
        reps.setdefault((float(r["dose"]), r["overlap"]), set()).add(int(r.get("replicate", 0)))
    return {len(v) for v in reps.values()}


def _by_cell_replicate(records) -> dict:
    """{(dose, overlap, replicate): {arm: metrics record}}."""
    out: dict[tuple, dict] = {}
    for m in records:
        out.setdefault(m.cell(), {})[str(m.arm)] = m
    return out


def bootstrap_settings(records) -> dict:
    """The bootstrap settings recorded in metrics records: {"block_px": sorted values,
    "resamples": ..., "confidence": ..., "method": ...} (empty when none has a record)."""
    seen: dict[str, set] = {"block_px": set(), "resamples": set(), "confidence": set(),
                            "method": set()}
    for m in records:
        rec = m.bootstrap or {}
        for k, values in seen.items():
            if k in rec:
                values.add(rec[k])
    return {k: sorted(v) for k, v in seen.items() if v}


def collect_paired_differences(records, metrics=PAIRED_METRICS,
                               confidence: float = CONFIDENCE) -> list[dict]:
    """Differences between every two arms of each cell, with intervals.

    One entry per (cell, arm pair, quantity, metric): ``{"dose", "overlap", "arm_a", "arm_b",
    "quantity", "metric", "diff" (a - b), "low", "high", "n_replicates", "method"}``. Cells with
    one replicate use the paired block bootstrap of the two arms' ``bootstrap`` records; cells
    with several the paired t interval of the per-replicate differences. ``records``: metrics
    records (:func:`ptycho.reporting.records.load_records`)."""
    from ptycho.evaluation.intervals import paired_difference_interval

    by = _by_cell_replicate(records)
    cells: dict[tuple, list[int]] = {}
    for d, ov, rep in by:
        cells.setdefault((d, ov), []).append(rep)
    out = []
    for (d, ov), reps in sorted(cells.items(), key=lambda kv: kv[0][0]):
        arms = sorted(set.intersection(*(set(by[(d, ov, r)]) for r in reps)), key=arm_sort_key)
        for a, b in combinations(arms, 2):
            for q, name in metrics:
                entry = {"dose": d, "overlap": ov, "arm_a": a, "arm_b": b, "quantity": q,
                         "metric": name, "n_replicates": len(reps)}
                if len(reps) == 1:
                    ma, mb = by[(d, ov, reps[0])][a], by[(d, ov, reps[0])][b]
                    if ma.bootstrap is None or mb.bootstrap is None:
                        continue
                    _, (lo, hi) = paired_difference_interval(ma.bootstrap, mb.bootstrap, q, name)
                    diff = float(ma.metrics[q][name]) - float(mb.metrics[q][name])
                    entry.update(diff=diff, low=lo, high=hi, method="paired block bootstrap")
                else:
                    diffs = [float(by[(d, ov, r)][a].metrics[q][name])
                             - float(by[(d, ov, r)][b].metrics[q][name]) for r in reps]
                    diff, _, lo, hi = t_interval(diffs, confidence)
                    entry.update(diff=diff, low=lo, high=hi, method="paired t over replicates")
                out.append(entry)
    return out


def _signed(v: float, lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{v:+.3f}"
    star = "" if lo <= 0 <= hi else " *"
    return f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]{star}"


def paired_markdown(entries, confidence: float = CONFIDENCE) -> list[str]:
    """The summary section of :func:`collect_paired_differences` entries."""
    if not entries:
        return []
    cols = []
    for e in entries:
        if (e["quantity"], e["metric"]) not in cols:
            cols.append((e["quantity"], e["metric"]))
    methods = sorted({e["method"] for e in entries})
    lines = ["## Paired differences between arms", "",
             (f"Arm A minus arm B in the same cell, with the {confidence:.0%} interval of the "
              f"difference ({'; '.join(methods)}). A paired block bootstrap resamples both arms "
              "with the same blocks of the evaluation region; with replicates, the interval is "
              "the t interval of the per-replicate differences. * marks an interval that "
              "excludes 0. SSIM: higher is better; MAE: lower is better."), ""]
    head = ["Dose (photons)", "Overlap", "A − B"] + [f"{q} {m.upper()}" for q, m in cols]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(cols)) + "|")
    rows: dict[tuple, dict] = {}
    for e in entries:
        key = (e["dose"], e["overlap"], e["arm_a"], e["arm_b"])
        rows.setdefault(key, {})[(e["quantity"], e["metric"])] = e
    for (d, ov, a, b), cells in rows.items():
        vals = [(_signed(c["diff"], c["low"], c["high"]) if (c := cells.get(k)) else "—")
                for k in cols]
        lines.append("| " + " | ".join([dose_label(d), ov, f"{a} − {b}"] + vals) + " |")
    lines.append("")
    return lines


def collect_fluence(records) -> dict:
    """{(dose, overlap): fluence block of the metrics records} (the first record of each cell)."""
    out = {}
    for m in records:
        key = (float(m.dose), str(m.overlap_view))
        if key not in out and isinstance(m.fluence, dict):
            out[key] = m.fluence
    return out


def fluence_markdown(fluence: dict, overlap_targets: dict | None = None) -> list[str]:
    """Fluence per cell: photons per pixel (and per m^2 when the pixel size is known)."""
    if not fluence:
        return []
    per_m2 = any(f.get("photons_per_m2") is not None for f in fluence.values())
    lines = ["## Fluence", "",
             ("Fluence: incident photons per object pixel, dose x sum over exposures of "
              "|P|^2 / sum |P|^2, averaged over the evaluation region. Exposure density: "
              "fluence / dose, the exposures per pixel of area (a raster at step s gives "
              "1 / s^2). Dense and sparse scans at one dose differ in fluence."), ""]
    head = ["Dose (photons)", "Overlap", "Fluence (photons/px)", "Exposures per px²"]
    if per_m2:
        head.append("Fluence (photons/m²)")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    order = list(overlap_targets or [])
    for (d, ov), f in sorted(fluence.items(), key=lambda kv: (
            kv[0][0], order.index(kv[0][1]) if kv[0][1] in order else len(order), kv[0][1])):
        row = [dose_label(d), ov, f"{f['photons_per_px']:.4g}", f"{f['exposures_per_px']:.3f}"]
        if per_m2:
            v = f.get("photons_per_m2")
            row.append("—" if v is None else f"{v:.4g}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def equal_fluence_markdown(view: dict | None, estimates: dict, fluence: dict,
                           overlaps: dict) -> list[str]:
    """The equal-fluence view's cells side by side: nominal and measured fluence and each arm's
    SSIM (mean with spread or interval). ``view``: the study's ``equal_fluence`` block."""
    if not view:
        return []
    cells = [(float(c["dose"]), c["overlap"]) for c in view["cells"]]
    arms = sorted({k[2] for k in estimates if (k[0], k[1]) in cells}, key=arm_sort_key)
    lines = ["## Equal-fluence view", "",
             ("Cells chosen to deposit the same fluence (dose / (1 - f)^2 within "
              f"{view.get('tolerance', 0.1):.0%}): at one photon budget on the sample, is it "
              "better to scan densely at low dose per exposure or sparsely at high dose? "
              "Amplitude / phase SSIM of each arm."), ""]
    head = ["Dose (photons)", "Overlap", "Fluence (photons/px)"] + arms
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for d, ov in cells:
        f = (fluence.get((d, ov)) or {}).get("photons_per_px")
        row = [dose_label(d), ov, "—" if f is None else f"{f:.4g}"]
        for a in arms:
            parts = [(e.text(".3f") if (e := estimates.get((d, ov, a, q, "ssim"))) else "—")
                     for q in ("amplitude", "phase")]
            row.append(" / ".join(parts))
        lines.append("| " + " | ".join(row) + " |")
    if overlaps:
        lines.append("")
        lines.append("Nominal fluence ratio dose / (1 - f)^2: " + ", ".join(
            f"{dose_label(d)} {ov}: {d / (1 - overlaps[ov]) ** 2:.4g}" for d, ov in cells
            if ov in overlaps))
    lines.append("")
    return lines


def interval_note(unc: dict | None, replicates: set[int], has_intervals: bool = True) -> str:
    """The sentence under the main table that says what its brackets and ± mean."""
    conf = (unc or {}).get("confidence", CONFIDENCE)
    b = (unc or {}).get("bootstrap") or {}
    parts = []
    if has_intervals and (1 in replicates or not replicates):
        if b:
            block = ", ".join(str(x) for x in b.get("block_px", []))
            res = ", ".join(str(x) for x in b.get("resamples", []))
            how = (f"spatial block bootstrap over the evaluation region (square blocks of {block} "
                   f"px, about one probe diameter; {res} resamples, percentile interval")
        else:
            how = "spatial block bootstrap over the evaluation region (percentile interval"
        parts.append(
            f"Brackets: the {conf:.0%} interval of a {how}; PSNR through MSE; MS-SSIM per "
            "scale, narrower than the truth because its coarse windows span several blocks); "
            "FRC resolutions carry an interval from the sampling error of the ring correlations "
            "(Fisher z). It measures the spatial sampling of one reconstruction, not a rerun "
            "with new noise and training.")
    if any(r > 1 for r in replicates):
        n = ", ".join(str(r) for r in sorted(r for r in replicates if r > 1))
        parts.append(f"± : mean ± standard deviation over {n} replicates (each with its own "
                     "noise, grouping and training seeds, the same scan positions).")
    return " ".join(parts)


def check_interval_record(m, where: str) -> list[str]:
    """Problems of one metrics record's intervals: each must be finite and contain its value;
    SSIM, MAE, MSE, PSNR, MS-SSIM and FRC of both components and NCE must have one."""
    from ptycho.evaluation.intervals import INTERVAL_METHODS

    problems = []
    iv = m.intervals
    if not isinstance(iv, dict):
        return [f"{where}: no intervals"]
    for q in ("amplitude", "phase", "complex"):
        names = ("nce",) if q == "complex" else tuple(k for k in INTERVAL_METHODS if k != "nce")
        for name in names:
            v = (m.metrics.get(q) or {}).get(name)
            ci = (iv.get(q) or {}).get(name)
            if ci is None:
                problems.append(f"{where} {q}.{name}: no interval")
                continue
            try:
                lo, hi, x = float(ci[0]), float(ci[1]), float(v)
            except (TypeError, ValueError, IndexError):
                problems.append(f"{where} {q}.{name}: unreadable interval {ci!r}")
                continue
            if not all(math.isfinite(t) for t in (lo, hi, x)):
                problems.append(f"{where} {q}.{name}: interval [{lo}, {hi}] or value {x} not finite")
            elif not lo - 1e-9 * (1 + abs(x)) <= x <= hi + 1e-9 * (1 + abs(x)):
                problems.append(f"{where} {q}.{name} = {x:.6g} outside [{lo:.6g}, {hi:.6g}]")
    f = (m.fluence or {}).get("photons_per_px")
    if not (isinstance(f, (int, float)) and math.isfinite(f) and f > 0):
        problems.append(f"{where}: fluence {f!r} is not a positive number")
    return problems


__all__ = [
    "Estimate",
    "bootstrap_settings",
    "check_interval_record",
    "collect_fluence",
    "collect_paired_differences",
    "equal_fluence_markdown",
    "fluence_markdown",
    "interval_note",
    "paired_markdown",
    "replicate_counts",
    "summarise_replicates",
    "t_interval",
]
