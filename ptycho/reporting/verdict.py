"""The verdict and the answer of a finished study: what a reader needs first.

- The verification verdict: every check of ``verification_report.json``, passed or failed, with
  its detail, and the report's information entries (findings that do not fail the run).
- The answer: per overlap view and dose, which arms reconstruct best (amplitude and phase SSIM)
  and by how much. A lead is stated only where the paired interval of the difference
  (:func:`ptycho.reporting.uncertainty.collect_paired_differences`) excludes zero, and a
  difference smaller than the cross-machine spread of network training (``NETWORK_SPREAD_SSIM``)
  that involves an arm depending on trained weights is called a tie within that spread
  (:func:`classify`).
- The flat-object floor of every cell (the SSIM of a uniform object scored the same way), the
  network arms that score below it (a valid measurement, flagged for the reader) and the arms
  whose interval does not clear it.

Used by the summary (``summary.md`` / ``summary.html``), the report's front page
(``verdict.html``), the console line at the end of a run and the results page
(:mod:`ptycho.reporting.results_page`).
"""

from __future__ import annotations

import math

from ptycho.config import dose_label, is_network_arm
from ptycho.reporting import arm_sort_key

# SSIM by which a network arm's result moved between two machines (same study, same seeds: the
# trained weights differ with the hardware and its kernels). Differences below it that involve an
# arm depending on trained weights are not stated as findings.
NETWORK_SPREAD_SSIM = 0.05
QUANTITIES = ("amplitude", "phase")


# ----------------------------------------------------------------------------------- verdict
def weight_dependent(arm: str) -> bool:
    """True for arms whose result depends on trained network weights: the network arms, and the
    hybrid arm, which starts from a network arm's reconstruction."""
    return is_network_arm(arm) or arm == "hybrid"


def failed_checks(verification: dict) -> list[str]:
    return [str(c.get("name")) for c in verification.get("checks") or [] if not c.get("passed")]


def verification_passed(verification: dict) -> bool:
    """True when the report says passed, holds checks and none of them failed."""
    return (verification.get("passed") is True and bool(verification.get("checks"))
            and not failed_checks(verification))


def verdict_line(verification: dict) -> str:
    """The one-line verdict of a verification report (Markdown)."""
    checks = verification.get("checks") or []
    failed = failed_checks(verification)
    if verification_passed(verification):
        return f"**Verification: passed** ({len(checks)} of {len(checks)} checks passed)."
    names = ", ".join(f"`{n}`" for n in failed) or "the report holds no checks"
    return (f"**Verification: FAILED** ({len(failed)} of {len(checks)} checks failed: "
            f"{names}).")


def verdict_text(verification: dict) -> str:
    """The verdict as one plain line, for the console."""
    checks = verification.get("checks") or []
    failed = failed_checks(verification)
    where = f"study {verification.get('study')} ({verification.get('scale')} scale)"
    if verification_passed(verification):
        return f"Verification PASSED: {len(checks)} of {len(checks)} checks, {where}."
    return (f"Verification FAILED: {len(failed)} of {len(checks)} checks failed "
            f"({', '.join(failed) or 'no checks'}), {where}.")


def _one_line(text, limit: int = 400) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + " ..."


def verification_markdown(verification: dict, heading: str = "##",
                          with_line: bool = True) -> list[str]:
    """The verdict line (``with_line``), then every check (name, pass / FAILED, detail) and the
    information entries of the report."""
    lines = [f"{heading} Verification", ""]
    lines += [verdict_line(verification), ""] if with_line else [
        ("Every check of `report/verification_report.json`; `verified.ok` is written only when "
         "all pass."), ""]
    lines += ["| Check | Result | Detail |", "|---|---|---|"]
    for c in verification.get("checks") or []:
        res = "pass" if c.get("passed") else "**FAILED**"
        lines.append(f"| `{c.get('name')}` | {res} | {_one_line(c.get('detail', ''))} |")
    for c in verification.get("information") or []:
        lines.append(f"| `{c.get('name')}` | note | {_one_line(c.get('detail', ''))} |")
    lines.append("")
    if verification.get("information"):
        lines += ["*note*: information for the reader; it does not fail the run.", ""]
    return lines


def run_end_lines(roots, since: float | None = None, failed_only: bool = False) -> list[str]:
    """The lines a workflow run ends with: for each results directory ``roots``
    (``results/<study>/<scale>``) whose ``report/verification_report.json`` is at least as new as
    its ``metrics.csv`` (and, with ``since``, written since that time), the verdict
    (:func:`verdict_text`), the summary's path and how to build the HTML report. ``failed_only``:
    only the failed verdicts (a run that stopped on an error)."""
    import json
    from pathlib import Path

    out = []
    for root in roots:
        report = Path(root) / "report"
        vr, csv = report / "verification_report.json", report / "metrics.csv"
        try:
            if csv.is_file() and vr.stat().st_mtime < csv.stat().st_mtime:
                continue  # a verdict of older results
            if since is not None and vr.stat().st_mtime < since:
                continue
            verification = json.loads(vr.read_text())
        except (OSError, ValueError):
            continue
        if failed_only and verification_passed(verification):
            continue
        target = f"phase_g_{verification.get('scale') or 'scaled'}"
        summary = report / "summary.html"
        out += [verdict_text(verification)]
        if summary.is_file():
            out += [f"  Verdict, answer and every table: {summary} (also summary.md)"]
        out += [f"  HTML report: snakemake --report {Path(root) / 'report.html'} {target}"]
    return out


# ----------------------------------------------------------------------------------- statistics
def classify(entry: dict, spread: float = NETWORK_SPREAD_SSIM) -> str:
    """``supported`` (the paired interval excludes 0 and the difference is not within the
    cross-machine spread), ``spread`` (the interval excludes 0, but the difference is below
    ``spread`` and one of the arms depends on trained weights) or ``none`` (the interval includes
    0, or there is none)."""
    lo, hi, d = float(entry["low"]), float(entry["high"]), float(entry["diff"])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 <= hi:
        return "none"
    if abs(d) < spread and (weight_dependent(entry["arm_a"]) or weight_dependent(entry["arm_b"])):
        return "spread"
    return "supported"


def ssim_estimates(rows, metric: str = "ssim") -> dict:
    """``{(dose, overlap, arm, quantity): Estimate}`` of the amplitude and phase SSIM (or another
    ``metric`` of the tidy rows, e.g. ``ms_ssim``) of tidy rows (the mean over the replicates with
    its interval)."""
    from ptycho.reporting.uncertainty import summarise_replicates

    sub = [r for r in rows if r["metric"] == metric and r["quantity"] in QUANTITIES]
    return {k[:4]: e for k, e in summarise_replicates(sub).items()}


def _floor(references, dose, overlap, q, metric: str = "ssim"):
    v = ((references.get((dose, overlap)) or {}).get(q) or {}).get(metric)
    return None if v is None else float(v)


def below_floor(rows, references, network_only: bool = True) -> list[dict]:
    """Arms whose SSIM (the mean over the replicates) is below the flat object's in the same cell
    and component: ``{"dose", "overlap", "arm", "quantity", "value", "floor"}`` each, plus
    ``"ms_ssim"`` and ``"ms_floor"`` (the arm's and the flat object's MS-SSIM) where both are
    known. With ``network_only``, only the arms that depend on trained weights alone (not the
    solver arms)."""
    ms = ssim_estimates(rows, "ms_ssim")
    out = []
    for (d, ov, a, q), e in sorted(ssim_estimates(rows).items(),
                                   key=lambda kv: (kv[0][0], kv[0][1], arm_sort_key(kv[0][2]),
                                                   kv[0][3])):
        if network_only and not is_network_arm(a):
            continue
        f = _floor(references, d, ov, q)
        if f is not None and math.isfinite(e.value) and e.value < f:
            entry = {"dose": d, "overlap": ov, "arm": a, "quantity": q, "value": e.value,
                     "floor": f}
            m, mf = ms.get((d, ov, a, q)), _floor(references, d, ov, q, "ms_ssim")
            if m is not None and mf is not None and math.isfinite(m.value):
                entry.update(ms_ssim=m.value, ms_floor=mf)
            out.append(entry)
    return out


def _ms_above(e: dict) -> bool:
    return "ms_ssim" in e and e["ms_ssim"] > e["ms_floor"]


def below_floor_text(entries) -> str:
    """``baseline phase at 1e3 dense (0.081 < flat 0.112)``, joined by semicolons; an entry whose
    MS-SSIM is above the flat object's says so: ``(0.411 < flat 0.498; MS-SSIM 0.662 > flat
    0.157)``."""
    def one(e):
        ms = (f", MS-SSIM {e['ms_ssim']:.3f} > flat {e['ms_floor']:.3f}" if _ms_above(e) else "")
        return (f"{e['arm']} {e['quantity']} at {dose_label(e['dose'])} {e['overlap']} "
                f"({e['value']:.3f} < flat {e['floor']:.3f}{ms})")
    return "; ".join(one(e) for e in entries)


def below_floor_ms_note(entries) -> str:
    """A sentence for the below-floor entries whose MS-SSIM is above the flat object's ('' when
    there are none)."""
    n = sum(_ms_above(e) for e in entries)
    if not n:
        return ""
    return (f"{n} of them score above the flat object in MS-SSIM, which also weighs coarser "
            "scales: there they agree with the object better than a uniform object does, so the "
            "single-scale floor does not say they hold no structure.")


def floor_findings(rows, references) -> list[dict]:
    """Arms whose SSIM interval does not clear the cell's flat-object floor (its lower end, or its
    value without an interval, is at or below the floor)."""
    out = []
    for (d, ov, a, q), e in sorted(ssim_estimates(rows).items(),
                                   key=lambda kv: (kv[0][0], kv[0][1], arm_sort_key(kv[0][2]),
                                                   kv[0][3])):
        f = _floor(references, d, ov, q)
        if f is None:
            continue
        low = e.low if math.isfinite(e.low) else e.value
        if low <= f:
            out.append({"dose": d, "overlap": ov, "arm": a, "quantity": q, "value": e.value,
                        "low": low, "floor": f})
    return out


def _oriented(entry: dict, first: str) -> dict:
    """A paired-difference entry as ``first`` minus the other arm."""
    if entry["arm_a"] == first:
        return entry
    return {**entry, "arm_a": entry["arm_b"], "arm_b": entry["arm_a"], "diff": -entry["diff"],
            "low": -entry["high"], "high": -entry["low"]}


def answer(rows, paired, references=None, spread: float = NETWORK_SPREAD_SSIM) -> list[dict]:
    """What the statistics support, per (overlap view, dose) and component: one entry per cell
    ``{"overlap", "dose", "floor": {q: SSIM or None}, "components": {q: {...}}}`` where a
    component holds ``estimates`` ({arm: Estimate}), ``order`` (arms by SSIM, best first),
    ``top`` (the best arm and every arm it does not lead by a supported difference), ``ties``
    ([(arm, entry best - arm, "spread" or "none")]), ``lead`` (the best arm minus the best arm
    outside ``top``: a supported paired entry, or None when every arm is in ``top``).

    ``paired``: SSIM entries of :func:`ptycho.reporting.uncertainty.collect_paired_differences`."""
    references = references or {}
    est = ssim_estimates(rows)
    pairs = {}
    for e in paired or ():
        if e["metric"] == "ssim":
            pairs[(e["dose"], e["overlap"], e["quantity"], frozenset((e["arm_a"], e["arm_b"])))] = e
    overlaps: list[str] = []
    for r in rows:
        if r["overlap"] not in overlaps:
            overlaps.append(r["overlap"])
    cells = sorted({k[:2] for k in est}, key=lambda c: (overlaps.index(c[1]), c[0]))
    out = []
    for d, ov in cells:
        comps = {}
        for q in QUANTITIES:
            by_arm = {a: e for (dd, oo, a, qq), e in est.items()
                      if (dd, oo, qq) == (d, ov, q) and math.isfinite(e.value)}
            if not by_arm:
                continue
            order = sorted(by_arm, key=lambda a: (-by_arm[a].value, arm_sort_key(a)))
            best = order[0]
            top, ties, lead = [best], [], None
            for a in order[1:]:
                e = pairs.get((d, ov, q, frozenset((best, a))))
                kind = "none" if e is None else classify(e, spread)
                if kind == "supported":
                    if lead is None:
                        lead = _oriented(e, best)
                    continue
                top.append(a)
                ties.append((a, None if e is None else _oriented(e, best), kind))
            comps[q] = {"estimates": by_arm, "order": order, "top": top, "ties": ties,
                        "lead": lead}
        out.append({"overlap": ov, "dose": d, "components": comps,
                    "floor": {q: _floor(references, d, ov, q) for q in QUANTITIES}})
    return out


# ----------------------------------------------------------------------------------- text
def _signed(v: float) -> str:
    return format(float(v), "+.3f")


def diff_text(e: dict) -> str:
    """``+0.081 [+0.062, +0.101]``."""
    return f"{_signed(e['diff'])} [{_signed(e['low'])}, {_signed(e['high'])}]"


def _component_text(c: dict, spread: float) -> str:
    best = c["order"][0]
    e = c["estimates"][best]
    head = f"`{best}` {e.text('.3f')}"
    if len(c["top"]) == len(c["order"]) and len(c["order"]) > 1:
        return head + "; no arm leads the others (every difference is within its interval" + (
            f" or the {spread:.2f} spread" if any(k == "spread" for _, _, k in c["ties"]) else ""
        ) + ")"
    parts = [head]
    for a, e, kind in c["ties"]:
        why = f"within the {spread:.2f} spread" if kind == "spread" else "interval includes 0"
        parts.append(f"tied with `{a}` ({diff_text(e) + ', ' if e else ''}{why})")
    if c["lead"] is not None:
        parts.append(f"ahead of `{c['lead']['arm_b']}` by {diff_text(c['lead'])}")
    return ", ".join(parts)


def answer_markdown(ans: list[dict], rows, references, spread: float = NETWORK_SPREAD_SSIM,
                    overlap_targets: dict | None = None, heading: str = "##") -> list[str]:
    """The answer section: per overlap view, one row per dose with the best arm(s) of the
    amplitude and the phase SSIM, the lead over the next arm with its paired interval, and the
    flat-object floor; then the arms below the floor."""
    if not ans:
        return []
    lines = [f"{heading} Answer: which arm reconstructs best", "",
             ("Best SSIM of each cell (1 is perfect) with its interval. A lead over the next arm "
              "is stated only where the paired 95% interval of the difference excludes zero; "
              "trained networks give other weights on another machine (their SSIM moved by up to "
              f"{spread:.2f}), so a smaller difference involving a network arm (or the hybrid "
              "arm, which starts from one) is a tie within that spread. *Flat object*: the SSIM "
              "of a uniform object scored the same way, the floor an arm must clear to have "
              "reconstructed anything."), ""]
    overlaps = list(dict.fromkeys(c["overlap"] for c in ans))
    for ov in overlaps:
        f = (overlap_targets or {}).get(ov)
        lines += [f"{heading}# Overlap view `{ov}`" + (f" (f = {f:.2f})" if f is not None else ""),
                  "", ("| Dose (photons/exposure) | Amplitude SSIM | Phase SSIM | "
                       "Flat object (amplitude / phase) |"), "|---|---|---|---|"]
        for c in (c for c in ans if c["overlap"] == ov):
            cols = [(_component_text(c["components"][q], spread) if q in c["components"]
                     else "—") for q in QUANTITIES]
            fl = " / ".join("—" if c["floor"][q] is None else f"{c['floor'][q]:.3f}"
                            for q in QUANTITIES)
            lines.append(f"| {dose_label(c['dose'])} | {cols[0]} | {cols[1]} | {fl} |")
        lines.append("")
    lines += floor_markdown(rows, references)
    return lines


def front_markdown(verification: dict, rows, paired, references,
                   overlap_targets: dict | None = None,
                   spread: float = NETWORK_SPREAD_SSIM) -> list[str]:
    """What a reader needs first: the verdict line, the answer (:func:`answer_markdown`) and every
    check of the verification with its detail."""
    ans = answer(rows, paired, references, spread)
    return ([verdict_line(verification), ""]
            + answer_markdown(ans, rows, references, spread, overlap_targets)
            + verification_markdown(verification, with_line=False))


def floor_markdown(rows, references) -> list[str]:
    """The network arms below the flat object (flagged) and the arms whose interval does not
    clear it."""
    if not references:
        return []
    lines = []
    low = below_floor(rows, references)
    if low:
        note = below_floor_ms_note(low)
        lines += ["**Network arm below the flat object**: " + below_floor_text(low)
                  + ". This is a valid measurement: the network's reconstruction of that component "
                    "scores lower than a uniform object would." + (f" {note}" if note else ""), ""]
    unclear = [e for e in floor_findings(rows, references)
               if not any((e["dose"], e["overlap"], e["arm"], e["quantity"])
                          == (b["dose"], b["overlap"], b["arm"], b["quantity"]) for b in low)]
    if unclear:
        lines += ["Not distinguishable from a flat object (the SSIM interval does not clear the "
                  "cell's floor): " + "; ".join(
                      f"`{e['arm']}` {e['quantity']} at {dose_label(e['dose'])} {e['overlap']} "
                      f"(floor {e['floor']:.3f})" for e in unclear) + ".", ""]
    if not low and not unclear:
        lines += ["Every arm's SSIM interval clears its cell's flat-object floor.", ""]
    return lines


__all__ = [
    "NETWORK_SPREAD_SSIM",
    "answer",
    "answer_markdown",
    "below_floor",
    "below_floor_ms_note",
    "below_floor_text",
    "classify",
    "diff_text",
    "floor_findings",
    "floor_markdown",
    "front_markdown",
    "run_end_lines",
    "ssim_estimates",
    "verdict_line",
    "verdict_text",
    "verification_markdown",
    "verification_passed",
    "weight_dependent",
]
