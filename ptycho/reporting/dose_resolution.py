"""Quality against fluence and the dose-resolution law.

Dose-limited resolution theory (Howells et al. 2009, J. Electron Spectrosc. Relat. Phenom. 170, 4)
predicts, for a fixed contrast, that the resolution d needed to see a feature scales with the
fluence F on the sample as d ~ F^(-1/4). Per arm, overlap view and component, the FRC 1/7
resolution (px) of every replicate is fitted against the cell's fluence (mean incident photons per
pixel over the evaluation region) as a power law ``d = a F^k`` by least squares on log d versus
log F; ``k`` gets the Student-t interval of the slope (n - 2 degrees of freedom, n the points used).

Points where the FRC did not resolve a crossing inside the measurable band are censored and left
out of the fit: a curve that never fell below 1/7 reads the Nyquist period (2 px), one that was
below it from the first ring reads the largest period of the region (``frc_limits`` of
``metrics.json``). A fit needs two distinct fluences; an interval needs three points.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from ptycho.data.io import write_text
from ptycho.errors import PtychoError
from ptycho.evaluation.frc import NYQUIST_PERIOD_PX
from ptycho.reporting import arm_sort_key
from ptycho.reporting._figures import message_figure, pyplot, save
from ptycho.reporting.uncertainty import CONFIDENCE, summarise_replicates

HOWELLS_EXPONENT = -0.25
RESOLUTION_METRIC = "frc17_px"
FIT_COLUMNS = ("arm", "overlap", "quantity", "n_points", "n_censored", "exponent", "exponent_low",
               "exponent_high", "prefactor", "r2", "contains_minus_quarter")
_OVERLAP_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")


def fit_power_law(x, y, confidence: float = CONFIDENCE) -> dict:
    """Fit ``y = a x^k`` by least squares on ``log10 y = log10 a + k log10 x``.

    Returns ``{"exponent": k, "low", "high" (Student-t interval of k, NaN for n < 3),
    "prefactor": a, "r2", "n"}``. Raises ``PtychoError`` for non-positive values or fewer than
    two distinct x."""
    from scipy.stats import linregress
    from scipy.stats import t as student

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise PtychoError(f"power-law fit: x {x.shape} and y {y.shape} must be equal 1-D arrays")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise PtychoError("power-law fit: every x and y must be positive and finite")
    if np.unique(x).size < 2:
        raise PtychoError(f"power-law fit: needs two distinct x values, got {np.unique(x).size}")
    res = linregress(np.log10(x), np.log10(y))
    n = x.size
    if n >= 3:
        half = float(student.ppf(0.5 + confidence / 2, n - 2)) * float(res.stderr)
        low, high = res.slope - half, res.slope + half
    else:
        low = high = math.nan
    return {"exponent": float(res.slope), "low": float(low), "high": float(high),
            "prefactor": float(10**res.intercept), "r2": float(res.rvalue**2), "n": int(n)}


def collect_frc_limits(records) -> dict:
    """{(dose, overlap, replicate): largest FRC period (px)} from ``frc_limits`` of metrics records
    (:func:`ptycho.reporting.records.load_records`)."""
    out = {}
    for m in records:
        lim = (m.frc_limits or {}).get("largest_px")
        if lim is not None:
            out[m.cell()] = float(lim)
    return out


def resolution_points(rows, limits: dict | None = None) -> dict:
    """{(arm, overlap, quantity): [(fluence, resolution px, censored), ...]} from tidy rows."""
    limits = limits or {}
    out: dict[tuple, list] = {}
    for r in rows:
        if r["metric"] != RESOLUTION_METRIC or r["quantity"] not in ("amplitude", "phase"):
            continue
        f, v = float(r.get("fluence", math.nan)), float(r["value"])
        if not (math.isfinite(f) and math.isfinite(v)):
            continue
        largest = limits.get((float(r["dose"]), r["overlap"], int(r.get("replicate", 0))))
        censored = v <= NYQUIST_PERIOD_PX + 1e-9 or (largest is not None and v >= largest - 1e-9)
        out.setdefault((r["arm"], r["overlap"], r["quantity"]), []).append((f, v, censored))
    return out


def dose_resolution_fits(rows, limits: dict | None = None,
                         confidence: float = CONFIDENCE) -> list[dict]:
    """One fit per (arm, overlap view, component), sorted by arm, in the rows' overlap order:
    ``{"arm", "overlap", "quantity", "n_points", "n_censored", "exponent", "exponent_low",
    "exponent_high", "prefactor", "r2", "contains_minus_quarter" (True/False, None without an
    interval), "status"}`` (``status`` says why a fit is missing; exponent NaN then)."""
    overlaps = []
    for r in rows:
        if r["overlap"] not in overlaps:
            overlaps.append(r["overlap"])
    fits = []
    for (arm, ov, q), pts in resolution_points(rows, limits).items():
        used = [(f, v) for f, v, c in pts if not c]
        entry = {"arm": arm, "overlap": ov, "quantity": q, "n_points": len(used),
                 "n_censored": len(pts) - len(used), "exponent": math.nan,
                 "exponent_low": math.nan, "exponent_high": math.nan, "prefactor": math.nan,
                 "r2": math.nan, "contains_minus_quarter": None, "status": "fitted"}
        if len({f for f, _ in used}) < 2:
            entry["status"] = (f"not fitted: {len(used)} resolved point(s) at "
                               f"{len({f for f, _ in used})} fluence(s)")
        else:
            fit = fit_power_law([f for f, _ in used], [v for _, v in used], confidence)
            entry.update(exponent=fit["exponent"], exponent_low=fit["low"],
                         exponent_high=fit["high"], prefactor=fit["prefactor"], r2=fit["r2"])
            if math.isfinite(fit["low"]):
                entry["contains_minus_quarter"] = fit["low"] <= HOWELLS_EXPONENT <= fit["high"]
            else:
                entry["status"] = "fitted, no interval (2 points)"
        fits.append(entry)
    fits.sort(key=lambda e: (arm_sort_key(e["arm"]), overlaps.index(e["overlap"]), e["quantity"]))
    return fits


def write_fits_csv(fits, path) -> None:
    """The fits as CSV (``FIT_COLUMNS``; empty cells where a number is missing), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIT_COLUMNS)
    for e in fits:
        row = []
        for k in FIT_COLUMNS:
            v = e[k]
            if isinstance(v, float):
                row.append(repr(v) if math.isfinite(v) else "")
            else:
                row.append("" if v is None else str(v))
        w.writerow(row)
    write_text(path, buf.getvalue())


def _fit_text(e: dict) -> str:
    k = e["exponent"]
    if not math.isfinite(k):
        return "—"
    if not math.isfinite(e["exponent_low"]):
        return f"{k:+.3f}"
    return f"{k:+.3f} [{e['exponent_low']:+.3f}, {e['exponent_high']:+.3f}]"


def fits_markdown(fits, confidence: float = CONFIDENCE) -> list[str]:
    """The summary section of the fits: exponent with interval, and whether it holds -1/4."""
    if not fits:
        return []
    lines = ["## Dose-resolution law", "",
             ("FRC 1/7 resolution (px) against fluence (photons per pixel), fitted per arm, "
              "overlap view and component as d = a F^k (least squares on log d vs log F, "
              f"{confidence:.0%} Student-t interval of k). Dose-limited resolution theory "
              "(Howells et al. 2009) predicts k = -1/4 for a solver limited by photon noise. "
              "Points at the Nyquist period (2 px) or the largest measurable period are "
              "censored (left out). Few doses give wide intervals."), ""]
    lines.append("| Arm | Overlap | Component | Points (censored) | Exponent k [interval] | "
                 "R² | Contains −1/4 |")
    lines.append("|---|---|---|---:|---:|---:|---|")
    for e in fits:
        has = e["contains_minus_quarter"]
        verdict = "—" if has is None else ("yes" if has else "**no**")
        if e["status"].startswith("not fitted"):
            verdict = e["status"]
        r2 = f"{e['r2']:.3f}" if math.isfinite(e["r2"]) else "—"
        lines.append(f"| {e['arm']} | {e['overlap']} | {e['quantity']} | {e['n_points']} "
                     f"({e['n_censored']}) | {_fit_text(e)} | {r2} | {verdict} |")
    lines.append("")
    return lines


def _overlap_colour(ov: str, overlaps: list[str]) -> str:
    return _OVERLAP_COLOURS[overlaps.index(ov) % len(_OVERLAP_COLOURS)]


def _overlaps_and_arms(rows) -> tuple[list[str], list[str]]:
    overlaps, arms = [], set()
    for r in rows:
        if r["overlap"] not in overlaps:
            overlaps.append(r["overlap"])
        arms.add(r["arm"])
    return overlaps, sorted(arms, key=arm_sort_key)


def plot_fluence(rows, png, overlap_targets: dict | None = None,
                 equal_fluence_cells=None) -> None:
    """SSIM against fluence (log axis), one panel per arm (columns) and component (rows), one
    line per overlap view with the interval of each point (bootstrap interval for one replicate,
    t interval of the mean for several); cells of the equal-fluence view are ringed."""
    plt = pyplot()
    if not rows:
        message_figure(png, "SSIM versus fluence", "The metrics table has no rows.")
        return
    est = summarise_replicates(rows)
    overlaps, arms = _overlaps_and_arms(rows)
    fluence: dict[tuple, list] = {}
    for r in rows:
        if math.isfinite(float(r.get("fluence", math.nan))):
            fluence.setdefault((float(r["dose"]), r["overlap"]), []).append(float(r["fluence"]))
    ring = {(float(d), ov) for d, ov in (equal_fluence_cells or [])}
    fig, axes = plt.subplots(2, len(arms), figsize=(max(3.6 * len(arms) + 0.6, 8.0), 6.8),
                             squeeze=False, sharex=True, sharey="row", constrained_layout=True)
    for j, arm in enumerate(arms):
        for i, q in enumerate(("amplitude", "phase")):
            ax = axes[i, j]
            for ov in overlaps:
                pts = sorted((float(np.mean(fluence[(d, o)])), e)
                             for (d, o, a, qq, m), e in est.items()
                             if a == arm and o == ov and qq == q and m == "ssim"
                             and (d, o) in fluence)
                if not pts:
                    continue
                x = np.array([p[0] for p in pts])
                y = np.array([p[1].value for p in pts])
                lo = np.array([p[1].low for p in pts])
                hi = np.array([p[1].high for p in pts])
                ok = np.isfinite(lo) & np.isfinite(hi)
                err = np.vstack([np.where(ok, y - lo, 0.0), np.where(ok, hi - y, 0.0)])
                f = (overlap_targets or {}).get(ov)
                ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, color=_overlap_colour(ov, overlaps),
                            label=ov + (f" (f = {f:.2f})" if f is not None else ""))
            for (d, o) in ring:
                e = est.get((d, o, arm, q, "ssim"))
                if e is not None and (d, o) in fluence:
                    ax.plot([np.mean(fluence[(d, o)])], [e.value], "o", ms=13, mfc="none",
                            mec="black", mew=1.4)
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{arm}: {q}", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{q} SSIM")
            if i == 1:
                ax.set_xlabel("fluence (photons / pixel, log scale)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if ring:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], ls="none", marker="o", ms=11, mfc="none", mec="black"))
        labels.append("equal-fluence view")
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels),
                   title="overlap view")
    fig.suptitle(f"SSIM against fluence: study {rows[0]['study']}, {rows[0]['scale']} scale\n"
                 "error bars: 95% interval (block bootstrap for one replicate, t interval of the "
                 "mean for several); read equal-fluence comparisons along a vertical line")
    save(fig, png)


def plot_dose_resolution(rows, fits, png, limits: dict | None = None) -> None:
    """FRC 1/7 resolution against fluence (log-log), one row of panels per arm, amplitude and
    phase side by side: points per overlap view (hollow: censored), the fitted power law with
    the band of its exponent's interval (pivoted at the fit's centre) and a dotted line of slope
    -1/4 through that centre. A fit without an interval (two points: no degree of freedom) is not
    drawn; the panel says so. Each panel lists its exponents with their intervals."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    pts = resolution_points(rows, limits)
    if not pts:
        message_figure(png, "Dose-resolution law", "No FRC 1/7 resolutions with a fluence.")
        return
    overlaps, arms = _overlaps_and_arms(rows)
    fit_of = {(e["arm"], e["overlap"], e["quantity"]): e for e in fits}
    # two arms a row beyond three arms: the figure fits the report's view at 1,400 px
    per_row = 2 if len(arms) > 3 else 1
    nrows = math.ceil(len(arms) / per_row)
    fig, axes = plt.subplots(nrows, 2 * per_row,
                             figsize=(14.2 if per_row == 2 else 11.0, 2.75 * nrows + 1.7),
                             squeeze=False, sharex=True, sharey=True, constrained_layout=True)
    for ax in axes.ravel()[2 * len(arms):]:
        ax.axis("off")
    for n_a, arm in enumerate(arms):
        i, col = divmod(n_a, per_row)
        for jq, q in enumerate(("amplitude", "phase")):
            j = 2 * col + jq
            ax = axes[i, j]
            notes = []
            for ov in overlaps:
                p = pts.get((arm, ov, q))
                if not p:
                    continue
                c = _overlap_colour(ov, overlaps)
                x = np.array([t[0] for t in p])
                y = np.array([t[1] for t in p])
                cens = np.array([t[2] for t in p])
                ax.plot(x[~cens], y[~cens], "o", color=c, ms=6)
                ax.plot(x[cens], y[cens], "o", mfc="none", mec=c, mew=1.5, ms=7)
                e = fit_of.get((arm, ov, q))
                if not (e and math.isfinite(e["exponent"])):
                    notes.append((f"{ov}: not fitted ({e['n_points'] if e else 0} resolved)", c))
                    continue
                if not math.isfinite(e["exponent_low"]):
                    notes.append((f"{ov}: 2 points, no fit drawn", c))
                    continue
                xs = np.geomspace(x[~cens].min(), x[~cens].max(), 30)
                xm = math.sqrt(x[~cens].min() * x[~cens].max())
                ym = e["prefactor"] * xm ** e["exponent"]
                lo = ym * (xs / xm) ** e["exponent_low"]
                hi = ym * (xs / xm) ** e["exponent_high"]
                ax.fill_between(xs, np.minimum(lo, hi), np.maximum(lo, hi), color=c, alpha=0.15,
                                lw=0)
                ax.plot(xs, ym * (xs / xm) ** e["exponent"], "-", color=c, lw=1.8)
                ax.plot(xs, ym * (xs / xm) ** HOWELLS_EXPONENT, ":", color="0.2", lw=1.2)
                notes.append((f"{ov}: k = {_fit_text(e)}", c))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title("\n".join([f"{arm}: {q}"] + [t for t, _ in notes]), fontsize=9,
                         loc="left")
            if j == 0:
                ax.set_ylabel("FRC 1/7 resolution (px)")
            if n_a + per_row >= len(arms):
                ax.set_xlabel("fluence (photons / pixel)")
                ax.xaxis.set_tick_params(labelbottom=True)
    ys = [v for p in pts.values() for _, v, _ in p if v > 0]
    if ys:  # the points set the range; a wide band of an uninformative exponent is clipped
        axes[0, 0].set_ylim(min(ys) / 2.5, max(ys) * 2.5)
    handles = [Line2D([], [], color=_overlap_colour(ov, overlaps), marker="o", ls="-",
                      label=f"{ov}: points and fit") for ov in overlaps]
    handles += [Patch(color="0.5", alpha=0.3, label="interval of the exponent"),
                Line2D([], [], ls="none", marker="o", mfc="none", mec="0.2", mew=1.5,
                       label="censored (Nyquist or largest period)"),
                Line2D([], [], color="0.2", ls=":", label="slope -1/4 (Howells et al. 2009)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=10)
    fig.suptitle(f"Dose-resolution law: study {rows[0]['study']}, {rows[0]['scale']} scale\n"
                 "fitted d = a F^k per overlap view, k with its 95% interval; a fit of two points "
                 "has no interval and is not drawn")
    save(fig, png)


__all__ = [
    "FIT_COLUMNS",
    "HOWELLS_EXPONENT",
    "collect_frc_limits",
    "dose_resolution_fits",
    "fit_power_law",
    "fits_markdown",
    "plot_dose_resolution",
    "plot_fluence",
    "resolution_points",
    "write_fits_csv",
]
