"""The results page of a finished run, generated from its ``report/`` (never typed by hand)::

    python -m ptycho.reporting.results_page results/<study>/<scale> --out docs/results.md

It reads the run's ``report/metrics.csv``, ``report/verification_report.json``,
``report/provenance.json``, the figures under ``report/figures/`` and the ``metrics.json`` of
every (arm, cell, replicate) that ``metrics.csv`` lists (for the flat-object floor and the
paired differences), and writes one Markdown page:

- the verification verdict and every check, passed or failed;
- per cell, the amplitude and phase SSIM of every arm with its interval exactly as
  ``metrics.csv`` holds it (three decimals), and the cell's flat-object floor;
- what the statistics support: a difference between two arms is stated only where its paired
  interval (:func:`ptycho.reporting.uncertainty.collect_paired_differences`, the same entries as
  ``summary.md``) excludes zero, and a difference smaller than the cross-machine spread of
  network training (``NETWORK_SPREAD_SSIM``) involving an arm that depends on trained weights is
  marked as such rather than stated;
- what is and is not reproducible across machines;
- the machine, software versions, git commit and job wall time of the run (``provenance.json``);
- the figures: copied next to the page when they are small, otherwise referenced by their path
  in the results tree;
- in a study with model-error levels, each arm's loss against its exact cell from
  ``report/robustness.csv`` (the summary's table), with the same reading of small network
  differences.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path

from ptycho.config import dose_label
from ptycho.data.cells import cell_name
from ptycho.data.io import read_json
from ptycho.errors import PtychoError
from ptycho.reporting import arm_sort_key
from ptycho.reporting.verdict import (  # noqa: F401 - classify, weight_dependent: the page's API
    NETWORK_SPREAD_SSIM,
    classify,
    diff_text,
    floor_findings,
    verdict_line,
    verification_markdown,
    weight_dependent,
)

# Figures are copied next to the page when none is larger than this and all together are smaller
# than FIGURES_TOTAL_MAX; otherwise the page references them in the results tree.
FIGURE_MAX_BYTES = 400_000
FIGURES_TOTAL_MAX = 2_000_000
FMT = ".3f"
QUANTITIES = ("amplitude", "phase")
FIGURES = (
    ("ssim_grid", "SSIM of every arm and cell (amplitude and phase)"),
    ("ms_ssim_grid", "MS-SSIM of every arm and cell"),
    ("delta_grid", "SSIM differences between arms, with the paired intervals"),
    ("metric_vs_dose", "Metrics against dose"),
    ("fluence", "SSIM against fluence (photons per object pixel)"),
    ("dose_resolution", "Resolution (FRC 1/7) against dose: power-law fits"),
    ("frc", "Fourier ring correlation curves"),
    ("quality_time", "Quality against wall time (solver snapshots, network points)"),
    ("losses", "Training and validation loss of the trained arms"),
)
GENERATOR = "python -m ptycho.reporting.results_page"


# ----------------------------------------------------------------------------------- reading
def metric_paths(root: Path, rows) -> list[Path]:
    """The ``metrics.json`` of every (arm, cell, replicate) of ``metrics.csv`` rows, in order."""
    out: list[Path] = []
    for r in rows:
        cell = cell_name(dose_label(r["dose"]), r["overlap"], r["replicate"])
        p = root / "eval" / r["arm"] / cell / "metrics.json"
        if p not in out:
            out.append(p)
    return out


def load_run(root) -> dict:
    """Everything the page shows, read from the run directory ``root``
    (``results/<study>/<scale>``)."""
    from ptycho.reporting.records import collect_references, load_records, read_metrics_csv
    from ptycho.reporting.robustness import read_losses_csv
    from ptycho.reporting.uncertainty import collect_paired_differences

    root = Path(root)
    report = root / "report"
    rows = read_metrics_csv(report / "metrics.csv")
    if not rows:
        raise PtychoError(f"{report / 'metrics.csv'}: no rows")
    records = load_records(metric_paths(root, rows))
    has_ssim = any(r["metric"] == "ssim" for r in rows)
    return {
        "root": root,
        "rows": rows,
        "verification": read_json(report / "verification_report.json",
                                  "verification report (is the run finished?)"),
        "provenance": read_json(report / "provenance.json",
                                "provenance record (is the run finished?)"),
        "references": collect_references(records),
        "paired": [e for e in collect_paired_differences(records) if e["metric"] == "ssim"]
        if has_ssim else [],
        "figures": sorted((report / "figures").glob("*.png")),
        "robustness": (read_losses_csv(report / "robustness.csv")
                       if (report / "robustness.csv").is_file() else []),
    }


# ----------------------------------------------------------------------------------- formatting
def fmt(v) -> str:
    """A number as the page prints it (three decimals; ``nan`` where it is not finite)."""
    v = float(v)
    return format(v, FMT) if math.isfinite(v) else "nan"


def value_text(value, low, high) -> str:
    """``0.412 [0.398, 0.425]``, or ``0.412`` without an interval."""
    if math.isfinite(float(low)) and math.isfinite(float(high)):
        return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"
    return fmt(value)


def _signed(v: float) -> str:
    return format(float(v), "+" + FMT)


def _cells(rows) -> list[tuple[float, str]]:
    overlaps: list[str] = []
    for r in rows:
        if r["overlap"] not in overlaps:
            overlaps.append(r["overlap"])
    cells = {(float(r["dose"]), r["overlap"]) for r in rows}
    return sorted(cells, key=lambda c: (c[0], overlaps.index(c[1])))


def _ssim_rows(rows) -> dict:
    """{(dose, overlap, arm, quantity): [rows of each replicate, by replicate]}."""
    out: dict[tuple, list] = {}
    for r in rows:
        if r["metric"] == "ssim" and r["quantity"] in QUANTITIES:
            out.setdefault((float(r["dose"]), r["overlap"], r["arm"], r["quantity"]), []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["replicate"])
    return out


def _estimate_text(reps) -> str:
    """One replicate: its value and interval as in ``metrics.csv``. Several: the mean, the t
    interval of the mean (:func:`ptycho.reporting.uncertainty.summarise_replicates`) and every
    replicate's value."""
    if len(reps) == 1:
        r = reps[0]
        return value_text(r["value"], r["ci_low"], r["ci_high"])
    from ptycho.reporting.uncertainty import summarise_replicates

    (e,) = summarise_replicates(reps).values()
    each = ", ".join(value_text(r["value"], r["ci_low"], r["ci_high"]) for r in reps)
    return f"{value_text(e.value, e.low, e.high)}; replicates: {each}"


def _cell_fluence(rows, dose, overlap) -> float | None:
    vals = [float(r["fluence"]) for r in rows
            if float(r["dose"]) == dose and r["overlap"] == overlap
            and math.isfinite(float(r["fluence"]))]
    return sum(vals) / len(vals) if vals else None


# ----------------------------------------------------------------------------------- sections
def _header(run: dict, source: str) -> list[str]:
    rows, prov = run["rows"], run["provenance"]
    study, scale = rows[0]["study"], rows[0]["scale"]
    reps = sorted({int(r["replicate"]) for r in rows})
    arms = sorted({r["arm"] for r in rows}, key=arm_sort_key)
    return [
        f"<!-- Generated by `{GENERATOR} {source}` from the run's report/; do not edit by "
        "hand. -->",
        "",
        f"# Results: study `{study}`, {scale} scale",
        "",
        (f"From the run in `{source}`: {len(_cells(rows))} cells (dose x overlap), "
         f"{len(reps)} replicate{'s' if len(reps) > 1 else ''} each, arms "
         f"{', '.join(f'`{a}`' for a in arms)}. Every number below is formatted from that run's "
         "`report/metrics.csv` and `metrics.json` files; `report/summary.md` in the results tree "
         "has every metric (MS-SSIM, PSNR, MAE, FRC, NCE), the fluence view, the dose-resolution "
         "fits and the wall times."),
        "",
        verdict_line(run["verification"]),
        "",
    ]


def _verification(v: dict) -> list[str]:
    """Every check of the verification report with its detail, and its information entries."""
    return verification_markdown(v, with_line=False)


def _confidence(prov: dict) -> float:
    try:
        return float(prov["config"]["intervals"]["confidence"])
    except (KeyError, TypeError, ValueError):
        return 0.95


def _ssim_tables(run: dict) -> list[str]:
    rows, refs = run["rows"], run["references"]
    ssim = _ssim_rows(rows)
    if not ssim:
        return ["## Reconstruction quality", "",
                "This study has no ground truth (external data), so there is no SSIM: the "
                "ground-truth-free metrics (data residual, FRC between half-scan "
                "reconstructions) are in `report/summary.md` and `report/metrics.csv`.", ""]
    conf = _confidence(run["provenance"])
    multi = any(len(v) > 1 for v in ssim.values())
    lines = ["## SSIM per cell", "",
             ("SSIM of the amplitude and of the phase (1 is perfect) in the evaluation region, "
              "every arm aligned and scored the same way. "
              + (f"Brackets: the {conf:.0%} spatial block-bootstrap interval of the "
                 "reconstruction. " if not multi else
                 "With several replicates: the mean, the 95% t interval of the mean, then each "
                 "replicate's value with its block-bootstrap interval. ")
              + "*Flat object*: the SSIM of a uniform object scored the same way, the floor an "
                "arm must clear to have reconstructed anything; *− floor* is the arm's SSIM "
                "minus it (amplitude / phase)."), ""]
    for dose, ov in _cells(rows):
        flu = _cell_fluence(rows, dose, ov)
        title = f"### Dose {dose_label(dose)} photons per exposure, overlap `{ov}`"
        lines += [title, ""]
        if flu is not None:
            lines += [f"Fluence: {flu:.4g} photons per object pixel.", ""]
        lines += ["| Arm | Amplitude SSIM | Phase SSIM | − floor |", "|---|---:|---:|---:|"]
        arms = sorted({k[2] for k in ssim if k[:2] == (dose, ov)}, key=arm_sort_key)
        ref = refs.get((dose, ov)) or {}
        floor = {q: (ref.get(q) or {}).get("ssim") for q in QUANTITIES}
        for a in arms:
            cells, margin = [], []
            for q in QUANTITIES:
                reps = ssim.get((dose, ov, a, q))
                cells.append(_estimate_text(reps) if reps else "—")
                if reps and floor[q] is not None:
                    mean = sum(float(r["value"]) for r in reps) / len(reps)
                    margin.append(_signed(mean - float(floor[q])))
                else:
                    margin.append("—")
            lines.append(f"| `{a}` | {cells[0]} | {cells[1]} | {' / '.join(margin)} |")
        if any(v is not None for v in floor.values()):
            f = [fmt(floor[q]) if floor[q] is not None else "—" for q in QUANTITIES]
            lines.append(f"| *flat object* | {f[0]} | {f[1]} | |")
        lines.append("")
    return lines


def _floor_findings(run: dict) -> list[str]:
    """Arms whose SSIM interval does not clear the cell's flat-object floor."""
    return [f"`{e['arm']}`, {e['quantity']}, {dose_label(e['dose'])} `{e['overlap']}` (floor "
            f"{fmt(e['floor'])})" for e in floor_findings(run["rows"], run["references"])]


def _statistics(run: dict, spread: float) -> list[str]:
    paired = run["paired"]
    if not paired and not _ssim_rows(run["rows"]):
        return []
    methods = sorted({e["method"] for e in paired})
    lines = [
        "## What the statistics support", "",
        ("A difference between two arms of a cell is stated here only where its paired 95% "
         f"interval ({'; '.join(methods) or 'none available'}: the same intervals as "
         "`report/summary.md`) excludes zero. Trained networks do not give the same weights on "
         f"another machine: their SSIM moved by up to {spread:.2f} between machines, so a "
         f"difference smaller than {spread:.2f} that involves a network arm (or the hybrid arm, "
         "which starts from one) is listed as within that spread, not as a finding."), "",
    ]
    groups = {"supported": [], "spread": [], "none": []}
    for e in paired:
        groups[classify(e, spread)].append(e)
    if groups["supported"]:
        lines += ["| Dose | Overlap | A − B | Component | Difference [interval] | Higher |",
                  "|---|---|---|---|---:|---|"]
        for e in groups["supported"]:
            higher = e["arm_a"] if e["diff"] > 0 else e["arm_b"]
            lines.append(f"| {dose_label(e['dose'])} | {e['overlap']} | `{e['arm_a']}` − "
                         f"`{e['arm_b']}` | {e['quantity']} | {diff_text(e)} | `{higher}` |")
        lines.append("")
    else:
        lines += ["No difference between two arms clears both bars.", ""]
    if groups["spread"]:
        lines += [(f"Interval excludes zero, but within the {spread:.2f} cross-machine spread of "
                   "network training (not a finding): "
                   + "; ".join(f"{dose_label(e['dose'])} `{e['overlap']}`, `{e['arm_a']}` − "
                               f"`{e['arm_b']}` {e['quantity']} {diff_text(e)}"
                               for e in groups["spread"]) + "."), ""]
    if groups["none"]:
        lines += [(f"Interval includes zero (no difference supported): {len(groups['none'])} "
                   f"of {len(paired)} arm pairs x components; they are listed in "
                   "`report/summary.md`, *Paired differences between arms*."), ""]
    floor = _floor_findings(run)
    if floor:
        lines += ["Not distinguishable from a flat object (the SSIM interval does not clear the "
                  "cell's floor): " + "; ".join(floor) + ".", ""]
    elif _ssim_rows(run["rows"]):
        lines += ["Every arm's SSIM interval clears its cell's flat-object floor.", ""]
    return lines


def robustness_section(losses, confidence: float, spread: float) -> list[str]:
    """The losses of ``report/robustness.csv`` (the summary's table), preceded by how to read
    them: a loss whose interval holds zero is no loss, and a network arm's loss smaller than the
    cross-machine spread of training is not a finding either. Empty without model errors."""
    from ptycho.reporting.robustness import losses_markdown

    if not losses:
        return []
    table = losses_markdown(losses, confidence)
    lost = [e for e in losses if math.isfinite(e["loss_low"]) and e["loss_low"] > 0]
    big = [e for e in lost if not weight_dependent(e["arm"]) or e["loss"] >= spread]
    note = (f"{len(lost)} of {len(losses)} losses have a paired interval above zero; "
            f"{len(big)} of them are also beyond the {spread:.2f} SSIM cross-machine spread of "
            "network training or belong to an arm without trained weights (the others are "
            "within what two machines differ by and are not findings).")
    return table[:4] + [note, ""] + table[4:]


def _reproducibility(spread: float) -> list[str]:
    return [
        "## Reproducible across machines, and not", "",
        "- **Datasets**: reproducible. The simulation is seeded (`seeds.simulation`), so the same "
        "study gives the same diffraction patterns, scan positions and splits.",
        "- **Iterative arm** (pty-chi LSQML from a flat object, fixed seed): reproducible.",
        "- **Network weights** (PINN, adapted and baseline arms, and through its start the hybrid "
        "arm): not reproducible across machines. On one machine a rerun gives the same weights "
        "(TensorFlow runs with deterministic ops), but another machine's kernels give other "
        f"weights: the network arms' SSIM moved by up to {spread:.2f} between machines. Read "
        "their numbers with that spread.",
        "",
    ]


def _seconds(s) -> str:
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _machine(prov: dict) -> list[str]:
    plat, py, git = prov.get("platform") or {}, prov.get("python") or {}, prov.get("git") or {}
    tot = prov.get("totals") or {}
    lines = ["## Machine and versions", "",
             "From `report/provenance.json`.", "", "| | |", "|---|---|"]
    commit = git.get("commit") or "not recorded"
    dirty = git.get("dirty")
    lines.append(f"| Git commit | `{commit}`" + (" (with uncommitted changes)" if dirty else "")
                 + " |")
    if prov.get("created_utc"):
        lines.append(f"| Recorded (UTC) | {prov['created_utc']} |")
    if plat:
        lines.append(f"| Platform | {plat.get('platform', '?')} ({plat.get('machine', '?')}, "
                     f"{plat.get('cpu_count', '?')} CPUs) |")
    if py:
        lines.append(f"| Python | {py.get('version', '?')} |")
    if tot:
        lines.append(f"| Jobs | {tot.get('jobs', '?')}, {_seconds(tot.get('wall_time_s') or 0)} "
                     "of job wall time (summed over jobs; jobs may run side by side) |")
        if tot.get("peak_rss_mb") is not None:
            lines.append(f"| Largest job | {float(tot['peak_rss_mb']):.0f} MB resident |")
    for name, version in (prov.get("packages") or {}).items():
        lines.append(f"| {name} | {version if version else 'not installed'} |")
    return lines + [""]


def _figure_section(run: dict, out: Path, source: str, mode: str) -> list[str]:
    figs = {p.stem: p for p in run["figures"]}
    if not figs:
        return []
    order = [k for k, _ in FIGURES if k in figs] + sorted(k for k in figs if k not in
                                                          dict(FIGURES))
    titles = dict(FIGURES)
    sizes = [figs[k].stat().st_size for k in order]
    copy = mode == "copy" or (mode == "auto" and max(sizes) <= FIGURE_MAX_BYTES
                              and sum(sizes) <= FIGURES_TOTAL_MAX)
    lines = ["## Figures", ""]
    if copy:
        dest = out.parent / out.stem / "figures"
        dest.mkdir(parents=True, exist_ok=True)
        for k in order:
            shutil.copyfile(figs[k], dest / figs[k].name)
        rel = Path(os.path.relpath(dest, out.parent)).as_posix()
        lines += ["From the run's `report/figures/` (copied next to this page).", ""]
        for k in order:
            lines += [f"### {titles.get(k, k)}", "", f"![{titles.get(k, k)}]({rel}/{k}.png)", ""]
    else:
        lines += [(f"The run writes them to `{source}/report/figures/` (too large to copy "
                   "here); run the study to produce them:"), ""]
        for k in order:
            lines.append(f"- `{k}.png`: {titles.get(k, k)}")
        lines.append("")
    return lines


def results_markdown(run: dict, out: Path, source: str, figures: str = "auto",
                     spread: float = NETWORK_SPREAD_SSIM) -> str:
    """The page's Markdown (copies the figures next to ``out`` when ``figures`` says so)."""
    lines = (_header(run, source) + _verification(run["verification"]) + _ssim_tables(run)
             + _statistics(run, spread) + robustness_section(run.get("robustness", []),
                                                             _confidence(run["provenance"]),
                                                             spread)
             + _reproducibility(spread)
             + _figure_section(run, out, source, figures) + _machine(run["provenance"]))
    return "\n".join(lines).rstrip() + "\n"


def write_results_page(root, out, figures: str = "auto", spread: float = NETWORK_SPREAD_SSIM,
                       source: str | None = None) -> Path:
    """Write the results page of the run in ``root`` to ``out``; returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run = load_run(root)
    text = results_markdown(run, out, source or Path(root).as_posix(), figures, spread)
    out.write_text(text)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog=GENERATOR,
        description="Write the results page (Markdown) of a finished run from its report/.")
    ap.add_argument("root", help="the run's results directory, results/<study>/<scale>")
    ap.add_argument("--out", default="docs/results.md", help="page to write (default: "
                    "docs/results.md; copied figures go to <out without .md>/figures/)")
    ap.add_argument("--figures", choices=("auto", "copy", "link"), default="auto",
                    help="copy the figures next to the page, or only name their path in the "
                         "results tree (auto: copy when they are small)")
    ap.add_argument("--network-spread", type=float, default=NETWORK_SPREAD_SSIM,
                    help="SSIM by which network arms differ between machines "
                         f"(default {NETWORK_SPREAD_SSIM})")
    args = ap.parse_args(argv)
    try:
        out = write_results_page(args.root, args.out, args.figures, args.network_spread)
    except PtychoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
