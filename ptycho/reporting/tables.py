"""The Markdown summary of a study (``summary.md``): the value table of every cell and arm with its
intervals, the flat-object references and margins, the uncertainty sections
(:mod:`ptycho.reporting.uncertainty`), the dose-resolution fits
(:mod:`ptycho.reporting.dose_resolution`) and the reconstruction wall times.

The tidy ``metrics.csv`` and the records it comes from are :mod:`ptycho.reporting.records`.
"""

from __future__ import annotations

import math

from ptycho.config import dose_label
from ptycho.data.io import atomic_path
from ptycho.reporting import arm_sort_key
from ptycho.reporting.dose_resolution import collect_frc_limits, dose_resolution_fits, fits_markdown
from ptycho.reporting.uncertainty import (
    CONFIDENCE,
    bootstrap_settings,
    collect_fluence,
    collect_paired_differences,
    equal_fluence_markdown,
    fluence_markdown,
    interval_note,
    paired_markdown,
    replicate_counts,
    summarise_replicates,
)


def _index(rows) -> tuple[dict, list, list, list]:
    """(value lookup, doses ascending, overlaps in order of appearance, arms in canonical order);
    a value is the mean over the cell's replicates."""
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
                     uncertainty=None, sections=None, front=None) -> str:
    """The Markdown text of ``write_summary_md`` (the ground-truth-free columns when the table
    holds no SSIM: a study without ground truth); ``front``: Markdown lines placed under the
    title, before everything else (the verdict and the answer,
    :func:`ptycho.reporting.verdict.front_markdown`)."""
    references = references or {}
    table, doses, overlaps, arms = _index(rows)
    estimates = summarise_replicates(rows)
    fluence = _cell_fluence(rows)
    study = rows[0]["study"] if rows else "?"
    scale = rows[0]["scale"] if rows else "?"
    lines = [f"# {title or f'Study {study} ({scale} scale): reconstruction quality'}", ""]
    if front:
        lines += list(front) + ["## Values of every cell and arm", ""]
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


def collect_uncertainty(records, rows, study: dict | None = None,
                        confidence: float = CONFIDENCE) -> dict:
    """Everything the summary needs beyond the metric table, from metrics records
    (:func:`ptycho.reporting.records.load_records`) and their tidy ``rows``: bootstrap settings,
    paired differences, fluence per cell, the dose-resolution fits and (from the study dict) the
    equal-fluence view and overlap targets."""
    records = list(records)
    study = study or {}
    return {
        "confidence": confidence,
        "bootstrap": bootstrap_settings(records),
        "paired": collect_paired_differences(records, confidence=confidence),
        "fluence": collect_fluence(records),
        "fits": dose_resolution_fits(rows, collect_frc_limits(records), confidence),
        "equal_fluence": study.get("equal_fluence"),
        "overlaps": dict(study.get("overlaps") or {}),
    }


def uncertainty_markdown(unc: dict, estimates: dict) -> list[str]:
    """The summary sections of :func:`collect_uncertainty`: paired differences, fluence, the
    equal-fluence view and the dose-resolution fits."""
    conf = unc.get("confidence", CONFIDENCE)
    return (paired_markdown(unc.get("paired"), conf)
            + fluence_markdown(unc.get("fluence") or {}, unc.get("overlaps"))
            + equal_fluence_markdown(unc.get("equal_fluence"), estimates, unc.get("fluence") or {},
                                     unc.get("overlaps") or {})
            + fits_markdown(unc.get("fits") or [], conf))


def write_summary_md(rows, timing, path, title: str | None = None, references=None,
                     uncertainty=None, sections=None, front=None) -> None:
    """Markdown summary: one row per cell x arm (amplitude/phase SSIM, MS-SSIM, PSNR, MAE,
    FRC 1/7, complex NCE) plus the flat-object reference row of each cell and the SSIM margins
    over it (``references``: ``collect_references(...)`` output, or None to omit them), then the
    reconstruction wall time per arm and cell with the speed ratio iterative / pinn_g1.
    ``timing`` is ``collect_timing(...)`` output (or None to omit it). Every number shows its
    interval (one replicate) or mean ± sd (several); ``uncertainty``
    (:func:`collect_uncertainty`, or None) adds the paired
    differences between arms, the fluence per cell, the equal-fluence view and the
    dose-resolution fits; ``sections``: further Markdown texts appended in order (e.g. the
    quality-time tables); ``front``: lines placed first, under the title (the verdict and the
    answer)."""
    with atomic_path(path, ".md") as tmp:
        tmp.write_text(summary_markdown(rows, timing, title, references, uncertainty, sections,
                                        front))


__all__ = [
    "collect_uncertainty",
    "summary_markdown",
    "uncertainty_markdown",
    "write_summary_md",
]
