"""The tidy metric table (``metrics.csv``) and the Markdown summary of a study.

``metrics.csv`` has exactly the columns
``study,scale,dose,overlap,gridsize,arm,quantity,metric,value,replicate,fluence,ci_low,ci_high``:
one row per (cell, replicate, arm, quantity, metric). ``dose`` is the incident dose in photons per
exposure, ``overlap`` the overlap view name (e.g. ``dense``), ``quantity`` is ``amplitude``,
``phase`` or ``complex``, ``value`` the metric of that replicate. A value that is not finite is
written as ``nan`` so the verification can name it. ``replicate`` is the cell replicate (0 ..
R - 1), ``fluence`` the mean incident photons per object pixel over the evaluation region, and
``ci_low``/``ci_high`` the value's confidence interval (``intervals`` of ``metrics.json``: block
bootstrap, or for FRC the ring-correlation interval), empty where the metric has none.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ptycho.config import dose_label
from ptycho.data.io import atomic_path, write_text
from ptycho.errors import PtychoError
from ptycho.reporting import REQUIRED_METRICS, arm_sort_key

CSV_COLUMNS = ("study", "scale", "dose", "overlap", "gridsize", "arm", "quantity", "metric", "value",
               "replicate", "fluence", "ci_low", "ci_high")
_NUMBER_OR_EMPTY = ("fluence", "ci_low", "ci_high")
_QUANTITY_ORDER = ("amplitude", "phase", "complex")


def read_metrics_json(path) -> dict:
    """Load one ``metrics.json`` and check the keys the report relies on."""
    from ptycho.data.io import read_json

    path = Path(path)
    m = read_json(path, "metrics file")
    for key in ("arm", "gridsize", "dose", "overlap_view", "metrics"):
        if key not in m:
            raise PtychoError(f"{path}: missing key '{key}'")
    if not isinstance(m["metrics"], dict):
        raise PtychoError(f"{path}: 'metrics' must be a mapping quantity -> metric -> value")
    return m


def _metric_order(quantity: str, metric: str) -> tuple:
    known = REQUIRED_METRICS.get(quantity, ())
    return (known.index(metric), metric) if metric in known else (len(known), metric)


def collect_metrics(metric_paths, study_name: str, scale: str) -> list[dict]:
    """Tidy rows from ``metrics.json`` files, in the order of ``metric_paths``.

    Each row is a dict with the keys of ``CSV_COLUMNS``; ``dose`` is a float (photons per
    exposure), ``gridsize`` and ``replicate`` ints, ``value`` a float (NaN kept as NaN for the
    verification), ``fluence``, ``ci_low`` and ``ci_high`` floats (NaN where absent).
    """
    rows = []
    for path in metric_paths:
        m = read_metrics_json(path)
        fluence = (m.get("fluence") or {}).get("photons_per_px")
        intervals = m.get("intervals") or {}
        quantities = sorted(m["metrics"], key=lambda q: (_QUANTITY_ORDER.index(q)
                                                         if q in _QUANTITY_ORDER else 9, q))
        for q in quantities:
            values = m["metrics"][q]
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
                    "study": study_name, "scale": scale, "dose": float(m["dose"]),
                    "overlap": str(m["overlap_view"]), "gridsize": int(m["gridsize"]),
                    "arm": str(m["arm"]), "quantity": q, "metric": name, "value": v,
                    "replicate": int(m.get("replicate", 0)),
                    "fluence": math.nan if fluence is None else float(fluence),
                    "ci_low": _number(ci[0]), "ci_high": _number(ci[1]),
                })
    return rows


def collect_references(metric_paths) -> dict:
    """{(dose, overlap view): flat-object metrics} from the ``reference`` block of ``metrics.json``
    files (every arm of a cell carries the same one; the first is kept)."""
    refs = {}
    for path in metric_paths:
        m = read_metrics_json(path)
        flat = m.get("reference", {}).get("flat_object")
        key = (float(m["dose"]), str(m["overlap_view"]))
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


def write_metrics_csv(rows, path) -> None:
    """Write the tidy table with exactly ``CSV_COLUMNS`` (atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([r["study"], r["scale"], repr(float(r["dose"])), r["overlap"], int(r["gridsize"]),
                    r["arm"], r["quantity"], r["metric"], _fmt_value(float(r["value"])),
                    int(r.get("replicate", 0))]
                   + [_fmt_optional(r.get(k)) for k in _NUMBER_OR_EMPTY])
    write_text(path, buf.getvalue())


def read_metrics_csv(path) -> list[dict]:
    """Rows of ``metrics.csv`` with ``dose``, ``value``, ``fluence``, ``ci_low`` and ``ci_high``
    as float (an empty cell is NaN) and ``gridsize`` and ``replicate`` as int."""
    path = Path(path)
    if not path.is_file():
        raise PtychoError(f"{path}: metrics table not found")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise PtychoError(f"{path}: columns {reader.fieldnames}, expected {list(CSV_COLUMNS)}")
        rows = []
        for i, r in enumerate(reader, start=2):
            try:
                r["dose"] = float(r["dose"])
                r["gridsize"] = int(r["gridsize"])
                r["value"] = float(r["value"])
                r["replicate"] = int(r["replicate"])
                for k in _NUMBER_OR_EMPTY:
                    r[k] = float(r[k]) if r[k] != "" else math.nan
            except (TypeError, ValueError) as exc:
                raise PtychoError(f"{path}, line {i}: {exc}") from exc
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


def collect_timing(metric_paths) -> list[dict]:
    """Per cell and arm: reconstruction wall time (s) and the recorded iteration budget, if any."""
    out = []
    for path in metric_paths:
        m = read_metrics_json(path)
        info = m.get("recon_info") or {}
        t = m.get("recon_wall_time_s")
        out.append({
            "dose": float(m["dose"]), "overlap": str(m["overlap_view"]), "arm": str(m["arm"]),
            "recon_wall_time_s": None if t is None else float(t),
            "iterations": info.get("iterations") if isinstance(info, dict) else None,
        })
    return out


def _index(rows) -> tuple[dict, list, list, list]:
    """(value lookup, doses ascending, overlaps in order of appearance, arms in canonical order);
    a value is the mean over the cell's replicates."""
    from ptycho.reporting.uncertainty import summarise_replicates

    table = {k: e.value for k, e in summarise_replicates(rows).items()}
    doses, overlaps, arms = [], [], []
    for r in rows:
        if r["dose"] not in doses:
            doses.append(float(r["dose"]))
        if r["overlap"] not in overlaps:
            overlaps.append(r["overlap"])
        if r["arm"] not in arms:
            arms.append(r["arm"])
    return table, sorted(doses), overlaps, sorted(arms, key=arm_sort_key)


def _cell(v, fmt: str) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return "**nan**"
    return format(v, fmt)


_MD_COLUMNS = (
    ("amplitude", "ssim", "Amp SSIM", ".3f"),
    ("amplitude", "ms_ssim", "Amp MS-SSIM", ".3f"),
    ("amplitude", "psnr", "Amp PSNR (dB)", ".2f"),
    ("amplitude", "mae", "Amp MAE", ".4f"),
    ("amplitude", "frc17_px", "Amp FRC 1/7 (px)", ".2f"),
    ("phase", "ssim", "Phase SSIM", ".3f"),
    ("phase", "ms_ssim", "Phase MS-SSIM", ".3f"),
    ("phase", "psnr", "Phase PSNR (dB)", ".2f"),
    ("phase", "mae", "Phase MAE (rad)", ".4f"),
    ("phase", "frc17_px", "Phase FRC 1/7 (px)", ".2f"),
    ("complex", "nce", "NCE", ".4f"),
)


def _cell_fluence(rows) -> dict:
    """{(dose, overlap): mean fluence (photons/px) over the cell's replicates} of tidy rows."""
    acc: dict[tuple, list] = {}
    for r in rows:
        f = float(r.get("fluence", math.nan))
        if math.isfinite(f):
            acc.setdefault((float(r["dose"]), r["overlap"]), []).append(f)
    return {k: sum(v) / len(v) for k, v in acc.items()}


_MD_COLUMNS_GT_FREE = (
    ("data", "poisson_deviance", "Data residual (deviance/pattern)", ".1f"),
    ("amplitude", "frc50_px_halves", "Amp FRC 0.5, halves (px)", ".2f"),
    ("amplitude", "frc17_px_halves", "Amp FRC 1/7, halves (px)", ".2f"),
    ("phase", "frc50_px_halves", "Phase FRC 0.5, halves (px)", ".2f"),
    ("phase", "frc17_px_halves", "Phase FRC 1/7, halves (px)", ".2f"),
)
GT_FREE_INTRO = (
    "No ground truth (external data): only ground-truth-free metrics. Data residual: mean "
    "Poisson deviance per diffraction pattern of the reconstruction re-projected through the "
    "forward model at the test positions, after one fitted global intensity scale (lower is "
    "better; the noise floor is about the number of pixels holding counts). FRC, halves: "
    "resolution (px) where the Fourier ring correlation between the arm's reconstructions of the "
    "even and the odd test positions falls below 0.5 or 1/7 (lower is better). The *flat object* "
    "row re-projects a uniform object.")


def summary_markdown(rows, timing=None, title: str | None = None, references=None,
                     uncertainty=None, sections=None) -> str:
    """The Markdown text of ``write_summary_md`` (the ground-truth-free columns when the table
    holds no SSIM: a study without ground truth)."""
    from ptycho.reporting.uncertainty import (
        interval_note,
        replicate_counts,
        summarise_replicates,
        uncertainty_markdown,
    )

    references = references or {}
    table, doses, overlaps, arms = _index(rows)
    estimates = summarise_replicates(rows)
    fluence = _cell_fluence(rows)
    study = rows[0]["study"] if rows else "?"
    scale = rows[0]["scale"] if rows else "?"
    lines = [f"# {title or f'Study {study} ({scale} scale): reconstruction quality'}", ""]
    if rows and not any(r["metric"] == "ssim" for r in rows):
        return "\n".join(lines + [GT_FREE_INTRO, ""]
                         + _value_table(table, doses, overlaps, arms, references,
                                        _MD_COLUMNS_GT_FREE, estimates, fluence)
                         + (_timing_markdown(timing) if timing else []))
    lines += [(
        "Dose: incident photons per exposure. Overlap: the study's overlap view "
        "(f = 1 - step / probe diameter). SSIM and MS-SSIM are unitless (1 is perfect); PSNR uses "
        "the ground truth's range as data range; amplitude MAE is in amplitude units, phase MAE in "
        "radians; FRC 1/7 is the resolution (px) where the Fourier ring correlation falls below 1/7 "
        "(lower is better); NCE is the normalised complex error (lower is better). Every arm is "
        "aligned and scored identically in the same evaluation region. The best SSIM of each cell "
        "is in bold." + (" The *flat object* row of each cell scores a uniform object (1 wherever "
        "the test scan illuminates) the same way: the floor an arm must beat to show it "
        "reconstructed anything." if references else "") + (
        " Fluence: mean incident photons per object pixel over the evaluation region."
        if fluence else "")),
        "",
    ]
    note = interval_note(uncertainty, replicate_counts(rows),
                         any(math.isfinite(float(r.get("ci_low", math.nan))) for r in rows))
    if note:
        lines += [note, ""]
    lines += _value_table(table, doses, overlaps, arms, references, _MD_COLUMNS, estimates,
                          fluence)
    if references:
        lines += _margin_markdown(table, doses, overlaps, arms, references)
    if uncertainty:
        lines += uncertainty_markdown(uncertainty, estimates)
    if timing:
        lines += _timing_markdown(timing)
    lines += [s for s in (sections or ()) if s]
    return "\n".join(lines)


def _value_table(table, doses, overlaps, arms, references, columns, estimates=None,
                 fluence=None) -> list[str]:
    """One row per cell and arm with ``columns`` (each value with its interval or spread from
    ``estimates``), the best SSIM of a cell in bold, then the cell's flat-object reference row;
    a fluence column when ``fluence`` ({(dose, overlap): photons/px}) is given."""
    estimates, fluence = estimates or {}, fluence or {}
    lines = []
    fl = ["Fluence (photons/px)"] if fluence else []
    header = ["Dose (photons)", "Overlap", *fl, "Arm"] + [c[2] for c in columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * (3 + len(fl)) + ["---:"] * len(columns)) + "|")
    for d in doses:
        for ov in overlaps:
            present = [a for a in arms if any(k[:3] == (d, ov, a) for k in table)]
            best = {}
            for q in ("amplitude", "phase"):
                vals = [table.get((d, ov, a, q, "ssim")) for a in present]
                vals = [v for v in vals if v is not None and math.isfinite(v)]
                best[q] = max(vals) if vals else None
            flu = [_cell(fluence.get((d, ov)), ".4g")] if fluence else []
            for a in present:
                cells = [dose_label(d), ov, *flu, a]
                for q, name, _, fmt in columns:
                    v = table.get((d, ov, a, q, name))
                    e = estimates.get((d, ov, a, q, name))
                    s = _cell(v, fmt) if e is None else e.text(fmt)
                    if name == "ssim" and v is not None and best.get(q) == v and len(present) > 1:
                        s = f"**{s}**"
                    cells.append(s)
                lines.append("| " + " | ".join(cells) + " |")
            ref = references.get((d, ov))
            if ref and present:
                cells = [dose_label(d), ov, *flu, "*flat object*"]
                for q, name, _, fmt in columns:
                    v = ref.get(q, {}).get(name)
                    cells.append(_cell(None if v is None else float(v), fmt))
                lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _margin_markdown(table, doses, overlaps, arms, references) -> list[str]:
    """SSIM of each arm minus the flat-object floor of its cell (amplitude / phase)."""
    lines = ["## SSIM above the flat-object floor", "",
             ("Arm SSIM minus the flat object's SSIM in the same cell, amplitude / phase "
              "(positive: the arm beats a uniform object)."), ""]
    lines.append("| Dose (photons) | Overlap | " + " | ".join(arms) + " |")
    lines.append("|---|---|" + "|".join(["---:"] * len(arms)) + "|")
    for d in doses:
        for ov in overlaps:
            ref = references.get((d, ov))
            if not ref:
                continue
            row = [dose_label(d), ov]
            for a in arms:
                parts = []
                for q in ("amplitude", "phase"):
                    v, f = table.get((d, ov, a, q, "ssim")), ref.get(q, {}).get("ssim")
                    parts.append("—" if v is None or f is None else f"{v - float(f):+.3f}")
                row.append(" / ".join(parts))
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def _timing_markdown(timing) -> list[str]:
    acc: dict[tuple, list] = {}
    cells, arms, iters = [], [], set()
    for e in timing:
        key = (float(e["dose"]), e["overlap"])
        if key not in cells:
            cells.append(key)
        if e["arm"] not in arms:
            arms.append(e["arm"])
        if e.get("recon_wall_time_s") is not None:
            acc.setdefault(key + (e["arm"],), []).append(float(e["recon_wall_time_s"]))
        if e["arm"] == "iterative" and e.get("iterations") is not None:
            iters.add(int(e["iterations"]))
    t = {k: sum(v) / len(v) for k, v in acc.items()}  # mean over the replicates
    arms.sort(key=arm_sort_key)
    overlap_order = []
    for _, ov in cells:
        if ov not in overlap_order:
            overlap_order.append(ov)
    cells.sort(key=lambda c: (c[0], overlap_order.index(c[1])))
    ratio = "iterative" in arms and "pinn_g1" in arms
    lines = ["## Reconstruction wall time", ""]
    text = ("Wall time (s) of reconstructing the test split of each cell: network inference and "
            "stitching for the trained arms, the whole solve for the iterative arm (and for the "
            "hybrid arm, plus the inference of the network it starts from)"
            + (" (mean over the replicates)." if len(timing) > len(t) else "."))
    if ratio:
        text += " The last column is the speed ratio iterative / pinn_g1 inference (>1: PINN is faster)."
    if iters:
        text += (" Iterative arm (pty-chi LSQML, flat start): "
                 f"{', '.join(str(i) for i in sorted(iters))} iterations.")
    lines += [text, ""]
    header = ["Dose (photons)", "Overlap"] + [f"{a} (s)" for a in arms]
    if ratio:
        header.append("iterative / pinn_g1")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for d, ov in cells:
        row = [dose_label(d), ov]
        for a in arms:
            v = t.get((d, ov, a))
            row.append(_cell(v, ".2f"))
        if ratio:
            it, pg = t.get((d, ov, "iterative")), t.get((d, ov, "pinn_g1"))
            row.append(_cell(it / pg, ".1f") + "×" if it is not None and pg else "—")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def write_summary_md(rows, timing, path, title: str | None = None, references=None,
                     uncertainty=None, sections=None) -> None:
    """Markdown summary: one row per cell x arm (amplitude/phase SSIM, MS-SSIM, PSNR, MAE,
    FRC 1/7, complex NCE) plus the flat-object reference row of each cell and the SSIM margins
    over it (``references``: ``collect_references(...)`` output, or None to omit them), then the
    reconstruction wall time per arm and cell with the speed ratio iterative / pinn_g1.
    ``timing`` is ``collect_timing(...)`` output (or None to omit it). Every number shows its
    interval (one replicate) or mean ± sd (several); ``uncertainty``
    (``ptycho.reporting.uncertainty.collect_uncertainty(...)``, or None) adds the paired
    differences between arms, the fluence per cell, the equal-fluence view and the
    dose-resolution fits; ``sections``: further Markdown texts appended in order (e.g. the
    quality-time tables)."""
    with atomic_path(path, ".md") as tmp:
        tmp.write_text(summary_markdown(rows, timing, title, references, uncertainty, sections))


__all__ = [
    "CSV_COLUMNS",
    "collect_metrics",
    "collect_references",
    "collect_timing",
    "read_history",
    "read_metrics_csv",
    "read_metrics_json",
    "summary_markdown",
    "write_metrics_csv",
    "write_summary_md",
]
