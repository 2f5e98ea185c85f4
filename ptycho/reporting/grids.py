"""Study-level figures from ``metrics.csv``: metric grids (dose x overlap per arm), PINN-minus-other
delta grids, metrics versus dose, FRC curves and training-loss curves.

Dose is the incident dose in photons per exposure; overlap is the study's overlap view (the target
f is added to the labels when ``overlap_targets`` is given).
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.config import dose_label
from ptycho.errors import PtychoError
from ptycho.reporting import arm_sort_key
from ptycho.reporting._figures import arm_colour, arm_style, message_figure, pyplot, save
from ptycho.reporting.records import read_history, read_metrics_csv
from ptycho.reporting.uncertainty import summarise_replicates

_METRIC_NAMES = {"ssim": "SSIM", "ms_ssim": "MS-SSIM", "psnr": "PSNR (dB)", "mae": "MAE",
                 "mse": "MSE", "frc50_px": "FRC 0.5 resolution (px)",
                 "frc17_px": "FRC 1/7 resolution (px)", "nce": "NCE",
                 "poisson_deviance": "data residual (deviance/pattern)",
                 "frc50_px_halves": "FRC 0.5 of half scans (px)",
                 "frc17_px_halves": "FRC 1/7 of half scans (px)"}
NO_TRUTH = ("This study has no ground truth (data/ground_truth: false), so {name} cannot be "
            "computed.\nGround-truth-free metrics: residual_grid.png (data residual) and "
            "frc_halves_grid.png (FRC of half scans).")


class _Table:
    """Lookup over tidy rows: value(dose, overlap, arm, quantity, metric), the mean over the
    replicates, and its interval or spread (``ptycho.reporting.uncertainty.Estimate``)."""

    def __init__(self, rows):
        self.estimates = summarise_replicates(rows)
        self.values = {k: e.value for k, e in self.estimates.items()}
        doses, overlaps, arms = [], [], []
        for r in rows:
            d = float(r["dose"])
            if d not in doses:
                doses.append(d)
            if r["overlap"] not in overlaps:
                overlaps.append(r["overlap"])
            if r["arm"] not in arms:
                arms.append(r["arm"])
        self.doses = sorted(doses)
        self.overlaps = overlaps
        self.arms = sorted(arms, key=arm_sort_key)
        self.study = rows[0]["study"] if rows else "?"
        self.scale = rows[0]["scale"] if rows else "?"

    def get(self, d, ov, arm, q, m) -> float:
        return self.values.get((d, ov, arm, q, m), float("nan"))

    def matrix(self, arm, q, m) -> np.ndarray:
        return np.array([[self.get(d, ov, arm, q, m) for ov in self.overlaps] for d in self.doses])

    def bounds(self, d, ov, arm, q, m) -> tuple[float, float]:
        e = self.estimates.get((d, ov, arm, q, m))
        return (e.low, e.high) if e is not None else (math.nan, math.nan)

    def notes(self, arm, q, m) -> list[list[str]]:
        """Second line of each grid cell: ``[low, high]`` (one replicate) or ``± sd``."""
        out = []
        for d in self.doses:
            row = []
            for ov in self.overlaps:
                e = self.estimates.get((d, ov, arm, q, m))
                if e is None:
                    row.append("")
                elif e.n > 1 and math.isfinite(e.sd):
                    row.append(f"± {e.sd:.3f} (n = {e.n})")
                elif math.isfinite(e.low) and math.isfinite(e.high):
                    row.append(f"[{e.low:.3f}, {e.high:.3f}]")
                else:
                    row.append("")
            out.append(row)
        return out

    def has(self, metric: str) -> bool:
        return any(k[4] == metric for k in self.values)


def _missing_metric(t: _Table, metric: str, png) -> bool:
    """Write a figure saying why ``metric`` is absent (no ground truth); True when it did."""
    if t.has(metric):
        return False
    name = _METRIC_NAMES.get(metric, metric)
    message_figure(png, f"{name}: study {t.study}, {t.scale} scale", NO_TRUTH.format(name=name))
    return True


def _load(csv_path) -> _Table:
    rows = read_metrics_csv(csv_path)
    if not rows:
        raise PtychoError(f"{csv_path}: the metrics table has no rows")
    return _Table(rows)


def _overlap_labels(t: _Table, overlap_targets) -> list[str]:
    out = []
    for ov in t.overlaps:
        f = (overlap_targets or {}).get(ov)
        out.append(f"{ov}\n(f = {f:.2f})" if f is not None else ov)
    return out


def _label_grid_axes(ax, row: int, col: int) -> None:
    """Dose label on the first column, overlap label on the bottom (phase) row."""
    if col == 0:
        ax.set_ylabel("dose (photons/exposure)")
    else:
        ax.set_yticklabels([])
    if row == 1:
        ax.set_xlabel("scan overlap")


def _annotated_panel(ax, mat, cmap, norm, xlabels, ylabels, fmt="{:.2f}", notes=None):
    im = ax.imshow(mat, cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            v = mat[i, j]
            if not math.isfinite(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=11, color="black")
                continue
            r, g, b, _ = cmap(norm(v))
            light = 0.299 * r + 0.587 * g + 0.114 * b > 0.55
            note = notes[i][j] if notes else ""
            ax.text(j, i, fmt.format(v), ha="center", va="bottom" if note else "center",
                    fontsize=11, color="black" if light else "white", fontweight="bold")
            if note:
                ax.text(j, i, note, ha="center", va="top", fontsize=9,
                        color="black" if light else "white")
    ax.set_facecolor("0.85")
    return im


# A figure should fit the Snakemake report's view at 1,400 px without scrolling (a result taller
# than the window is cut at its top there): grids of more than three items put two a row.
def _grid_figure(plt, n_items: int, t: _Table, title_lines: int = 2):
    """Panels of (dose x overlap) grids for ``n_items`` items (arms or comparisons), each item an
    amplitude and a phase panel side by side, one or two items a row; returns (fig, slots) with
    ``slots[k]`` the (amplitude, phase) axes of item k and whether they are on the bottom row."""
    per_row = 2 if n_items > 3 else 1
    n_rows = math.ceil(n_items / per_row)
    w = max(2.6, 1.22 * len(t.overlaps) + 0.5)
    h = max(1.7, 0.56 * len(t.doses) + 0.8)
    fig, axes = plt.subplots(n_rows, 2 * per_row, squeeze=False, constrained_layout=True,
                             figsize=(2 * per_row * w + 1.0, h * n_rows + 0.4 + 0.3 * title_lines))
    slots = []
    for k in range(n_items):
        r, c = divmod(k, per_row)
        below = (r + 1) * per_row + c >= n_items  # no item under this one
        slots.append((axes[r, 2 * c], axes[r, 2 * c + 1], below, c == 0))
    for k in range(n_items, n_rows * per_row):
        r, c = divmod(k, per_row)
        axes[r, 2 * c].axis("off")
        axes[r, 2 * c + 1].axis("off")
    return fig, axes, slots


def _label_slot(ax, bottom: bool, first: bool) -> None:
    """Dose label on the first panel of a row, overlap label under the lowest panels."""
    if first:
        ax.set_ylabel("dose (photons/exposure)")
    else:
        ax.set_yticklabels([])
    if bottom:
        ax.set_xlabel("scan overlap")


def plot_metric_grid(csv_path, png, metric: str = "ssim", overlap_targets: dict | None = None) -> None:
    """Grid of ``metric`` (in each panel rows: dose, columns: overlap), one row of panels per arm,
    amplitude and phase side by side, values printed in the cells with their interval, one shared
    colour scale 0..1."""
    plt = pyplot()
    from matplotlib.colors import Normalize

    t = _load(csv_path)
    if _missing_metric(t, metric, png):
        return
    name = _METRIC_NAMES.get(metric, metric)
    fig, axes, slots = _grid_figure(plt, len(t.arms), t, 3)
    cmap = plt.get_cmap("viridis")
    norm = Normalize(0.0, 1.0)
    xl = _overlap_labels(t, overlap_targets)
    yl = [dose_label(d) for d in t.doses]
    im = None
    for arm, (*pair, bottom, first) in zip(t.arms, slots):
        for j, (ax, q) in enumerate(zip(pair, ("amplitude", "phase"))):
            im = _annotated_panel(ax, t.matrix(arm, q, metric), cmap, norm, xl, yl, "{:.3f}",
                                  t.notes(arm, q, metric))
            title = f"{arm}: {q} {name}"
            # a long arm name (a variant) gets a smaller font, so it does not run into the next panel
            ax.set_title(title, fontsize=11 if len(title) <= 30 else 9, fontweight="bold")
            _label_slot(ax, bottom, first and j == 0)
    cb = fig.colorbar(im, ax=axes, shrink=0.7, aspect=30)
    cb.set_label(f"{name} (1 = perfect)")
    fig.suptitle(f"{name} of the aligned test-region reconstruction: study {t.study}, {t.scale} "
                 "scale\nin each panel rows: dose (photons/exposure), columns: overlap view\n"
                 "under each value: its 95% interval (block bootstrap) or ± sd over replicates")
    save(fig, png)


def best_network(t: _Table, metric: str = "ssim") -> str | None:
    """The network arm (trained weights alone: PINN, adapted, baseline) with the highest mean
    ``metric`` over every cell and both components; None without a network arm."""
    from ptycho.config import is_network_arm

    best, score = None, -math.inf
    for a in t.arms:
        if not is_network_arm(a):
            continue
        v = np.concatenate([t.matrix(a, q, metric).ravel() for q in ("amplitude", "phase")])
        v = v[np.isfinite(v)]
        if v.size and float(v.mean()) > score:
            best, score = a, float(v.mean())
    return best


def _comparisons(t: _Table, metric: str = "ssim") -> list[tuple[str, str]]:
    """(best network arm, other arm) for every other arm of the table."""
    best = best_network(t, metric)
    return [] if best is None else [(best, o) for o in t.arms if o != best]


def plot_delta_grid(csv_path, png, metric: str = "ssim", overlap_targets: dict | None = None,
                    paired=None) -> None:
    """The best network arm (:func:`best_network`: highest mean ``metric``, default SSIM) minus
    every other arm, one row of panels per comparison, amplitude and phase side by side,
    diverging colour map centred at 0 (blue: the network better). ``paired``
    (``ptycho.reporting.uncertainty.collect_paired_differences`` entries) adds each difference's
    95% interval below it."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    t = _load(csv_path)
    if _missing_metric(t, metric, png):
        return
    name = _METRIC_NAMES.get(metric, metric)
    comps = _comparisons(t, metric)
    if not comps:
        message_figure(png, f"{name} differences: study {t.study}, {t.scale} scale",
                       f"No comparison possible: the study's arms are {', '.join(t.arms)}\n"
                       "(needs a network arm and another arm).")
        return
    best = comps[0][0]
    deltas = {(q, p, o): t.matrix(p, q, metric) - t.matrix(o, q, metric)
              for q in ("amplitude", "phase") for p, o in comps}
    finite = np.concatenate([np.abs(m[np.isfinite(m)]) for m in deltas.values()])
    lim = max(0.05, float(finite.max()) if finite.size else 0.05)
    norm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    cmap = plt.get_cmap("RdBu")
    fig, axes, slots = _grid_figure(plt, len(comps), t, 3)
    xl = _overlap_labels(t, overlap_targets)
    yl = [dose_label(d) for d in t.doses]
    im = None
    for (p, o), (*pair, bottom, first) in zip(comps, slots):
        for j, (ax, q) in enumerate(zip(pair, ("amplitude", "phase"))):
            im = _annotated_panel(ax, deltas[(q, p, o)], cmap, norm, xl, yl, "{:+.3f}",
                                  _paired_notes(paired, t, p, o, q, metric))
            ax.set_title(f"{q} {name}: {p} − {o}", fontsize=11, fontweight="bold")
            _label_slot(ax, bottom, first and j == 0)
    cb = fig.colorbar(im, ax=axes, shrink=0.6, aspect=30)
    cb.set_label(f"Δ {name} ({best} − other; > 0: {best} better)")
    fig.suptitle(f"{name} difference: the best network arm ({best}, highest mean {name})\nminus "
                 f"each other arm; study {t.study}, {t.scale} scale\nblue: {best} better, red: "
                 "worse" + ("; under each value: the paired 95% interval" if paired else ""))
    save(fig, png)


def _paired_notes(paired, t: _Table, a: str, b: str, q: str, metric: str):
    """``[low, high]`` of the paired difference a - b per grid cell (None without entries)."""
    if not paired:
        return None
    found = {}
    for e in paired:
        if (e["quantity"], e["metric"]) != (q, metric):
            continue
        if (e["arm_a"], e["arm_b"]) == (a, b):
            found[(e["dose"], e["overlap"])] = e
        elif (e["arm_a"], e["arm_b"]) == (b, a):  # the entry is b - a: turn it round
            found[(e["dose"], e["overlap"])] = {**e, "low": -e["high"], "high": -e["low"]}
    notes = []
    for d in t.doses:
        row = []
        for ov in t.overlaps:
            e = found.get((d, ov))
            ok = e is not None and math.isfinite(e["low"]) and math.isfinite(e["high"])
            row.append(f"[{e['low']:+.3f}, {e['high']:+.3f}]" if ok else "")
        notes.append(row)
    return notes


_VS_DOSE_ROWS = (("amplitude", "ssim"), ("phase", "ssim"), ("amplitude", "psnr"),
                 ("phase", "psnr"), ("amplitude", "frc17_px"), ("phase", "frc17_px"))
VS_DOSE_ROWS_GT_FREE = (("data", "poisson_deviance"), ("amplitude", "frc17_px_halves"),
                        ("phase", "frc17_px_halves"))


def _censoring(t: _Table, d, ov, m, value: float, limits: dict | None) -> str:
    """``""``, ``"upper"`` (an FRC resolution at the largest period the region measures: the curve
    never crossed inside the band, the true value is that large or larger) or ``"nyquist"`` (at the
    Nyquist period: as fine or finer)."""
    from ptycho.evaluation.frc import NYQUIST_PERIOD_PX

    if not m.startswith("frc") or not math.isfinite(value):
        return ""
    if value <= NYQUIST_PERIOD_PX + 1e-9:
        return "nyquist"
    largest = [v for (dd, oo, _), v in (limits or {}).items() if dd == d and oo == ov]
    if largest and value >= min(largest) - 1e-9:
        return "upper"
    return ""


def _dodge(x: np.ndarray, k: int, n: int, step: float = 0.022) -> np.ndarray:
    """Dose positions of the k-th of n arms shifted a little on the log axis (error bars apart)."""
    return x * 10 ** (step * (k - (n - 1) / 2))


def plot_metric_vs_dose(csv_path, png, rows=_VS_DOSE_ROWS, overlap_targets: dict | None = None,
                        references: dict | None = None, limits: dict | None = None) -> None:
    """Metric versus dose (log axis), one line per arm (its own marker and line style, shifted a
    little along the dose axis so that error bars and coinciding arms stay visible), one column
    of panels per overlap view; rows: amplitude/phase SSIM, PSNR and FRC 1/7 resolution.

    ``references`` (:func:`ptycho.reporting.records.collect_references`) draws the flat object's
    value of each cell (the floor); ``limits`` (:func:`ptycho.reporting.dose_resolution.
    collect_frc_limits`) marks censored FRC resolutions (hollow triangles at the panel's edge
    instead of their nominal value, which would squash the resolved points)."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    t = _load(csv_path)
    references = references or {}
    # panels: each row of ``rows`` once per overlap view, wrapped so that the figure fits the
    # report's view (amplitude and phase of one metric side by side for one or two views)
    n_c = len(t.overlaps)
    panels = [(q, m, ov) for q, m in rows for ov in t.overlaps]
    ncols = 2 * n_c if n_c <= 2 else n_c
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.25 * ncols + 0.6, 2.5 * nrows + 1.9),
                             squeeze=False, sharex=True, constrained_layout=True)
    x = np.array(t.doses)
    n_arm = len(t.arms)
    censored_any = floor_any = False
    for k, (q, m, ov) in enumerate(panels):
        f = (overlap_targets or {}).get(ov)
        i, j = divmod(k, ncols)
        ax = axes[i, j]
        frc = m.startswith("frc")
        resolved_hi, cens_pts = [], []
        for n_a, arm in enumerate(t.arms):
            y = np.array([t.get(d, ov, arm, q, m) for d in t.doses])
            if not np.isfinite(y).any():
                continue
            b = np.array([t.bounds(d, ov, arm, q, m) for d in t.doses])
            cens = [_censoring(t, d, ov, m, v, limits) for d, v in zip(t.doses, y)]
            keep = np.array([c == "" for c in cens])
            yk = np.where(keep, y, np.nan)
            ok = np.isfinite(b).all(axis=1) & keep
            err = np.vstack([np.where(ok, np.maximum(yk - b[:, 0], 0), 0.0),
                             np.where(ok, np.maximum(b[:, 1] - yk, 0), 0.0)])
            xk = _dodge(x, n_a, n_arm)
            colour = arm_colour(arm, t.arms)
            st = arm_style(arm)
            ax.errorbar(xk, yk, yerr=err, color=colour, capsize=2.5, elinewidth=1.0,
                        label=arm, **st)
            if frc:
                hi = np.where(ok, b[:, 1], yk)
                resolved_hi += [v for v in hi if math.isfinite(v)]
                cens_pts += [(xk[n], cens[n], colour) for n in range(len(cens)) if cens[n]]
        floor = [((references.get((d, ov)) or {}).get(q) or {}).get(m) for d in t.doses]
        if any(v is not None for v in floor):
            fy = np.array([np.nan if v is None else float(v) for v in floor])
            if frc:
                fy = np.where([_censoring(t, d, ov, m, v, limits) == "" for d, v in
                               zip(t.doses, fy)], fy, np.nan)
            if np.isfinite(fy).any():
                ax.plot(x, fy, color="0.15", ls=":", lw=1.8, marker="_", ms=14, zorder=1)
                floor_any = True
                if frc:
                    resolved_hi += [v for v in fy if math.isfinite(v)]
        ax.set_xscale("log")
        if frc:
            ax.set_yscale("log")
            top = max(resolved_hi) * 1.5 if resolved_hi else 10.0
            ax.set_ylim(1.7, top)
            for xc, kind, colour in cens_pts:
                yc, mk = (top / 1.3, "^") if kind == "upper" else (1.9, "v")
                ax.plot([xc], [yc], mk, mfc="white", mec=colour, mew=1.6, ms=8, zorder=4,
                        clip_on=False)
                censored_any = True
            from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(x, [dose_label(d) for d in x])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.grid(True, alpha=0.3)
        if m in ("ssim", "ms_ssim"):
            ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        name = _METRIC_NAMES.get(m, m).replace(" resolution", "")
        ax.set_title(f"{q} {name}\n{ov}" + (f" (f = {f:.2f})" if f is not None else ""),
                     fontsize=10.5)
        if j == 0 or panels[k - 1][1] != m:
            ax.set_ylabel(name, fontsize=10)
        if k + ncols >= len(panels):
            ax.set_xlabel("dose (photons/exposure)")
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    handles = [Line2D([], [], color=arm_colour(a, t.arms), label=a, **arm_style(a))
               for a in t.arms]
    if floor_any:
        handles.append(Line2D([], [], color="0.15", ls=":", lw=1.8, marker="_", ms=14,
                              label="flat object (floor)"))
    if censored_any:
        handles.append(Line2D([], [], ls="none", marker="^", mfc="white", mec="0.2", mew=1.6,
                              ms=8, label="FRC censored: no crossing in the band (▲ worse, ▼ "
                                          "Nyquist)"))
    fig.legend(handles=handles, loc="outside lower center",
               ncol=min(len(handles), 4 if ncols > 2 else 2), fontsize=10)
    fig.suptitle(f"Reconstruction quality versus dose: study {t.study}, {t.scale} scale\n"
                 "SSIM and PSNR: higher is better; FRC 1/7 resolution (log axis): lower is "
                 "better\nerror bars: 95% intervals; arms shifted slightly along dose")
    save(fig, png)


def _line_style(arm: str) -> dict:
    """:func:`ptycho.reporting._figures.arm_style` without markers (curves of many points)."""
    st = arm_style(arm)
    return {"linestyle": st["linestyle"], "linewidth": st["linewidth"] * 0.9,
            "zorder": st["zorder"], "alpha": st["alpha"]}


def plot_frc_curves(records, png, key: str = "frc") -> None:
    """Fourier ring correlation of every arm (lines) per cell of metrics records
    (:func:`ptycho.reporting.records.load_records`): rows dose, columns overlap x (amplitude,
    phase); the 0.5 and 1/7 thresholds are drawn. ``key`` "frc": against the ground truth;
    "frc_halves": between the reconstructions of the two half scans."""
    plt = pyplot()
    data = list(records)
    if not data:
        message_figure(png, "Fourier ring correlation", "No metrics files were given.")
        return
    doses = sorted({float(m.dose) for m in data})
    overlaps = []
    for m in data:
        if m.overlap_view not in overlaps:
            overlaps.append(m.overlap_view)
    arms = sorted({m.arm for m in data}, key=arm_sort_key)
    cols = [(ov, q) for ov in overlaps for q in ("amplitude", "phase")]
    fig, axes = plt.subplots(len(doses), len(cols), figsize=(max(3.4 * len(cols) + 0.5, 8.0), 2.6 * len(doses) + 1.0),
                             squeeze=False, sharex=True, sharey=True, constrained_layout=True)
    for m in data:
        i = doses.index(float(m.dose))
        for q in ("amplitude", "phase"):
            curve = (getattr(m, key, None) or {}).get(q) or {}
            fr, c = curve.get("freq"), curve.get("frc")
            if not fr or not c:
                continue
            ax = axes[i, cols.index((m.overlap_view, q))]
            ax.plot(fr, c, color=arm_colour(m.arm, arms), label=m.arm, **_line_style(m.arm))
    for i, d in enumerate(doses):
        for j, (ov, q) in enumerate(cols):
            ax = axes[i, j]
            ax.axhline(0.5, color="0.3", ls="--", lw=0.8)
            ax.axhline(1 / 7, color="0.3", ls=":", lw=0.8)
            ax.set_ylim(-0.1, 1.05)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"dose {dose_label(d)}, {ov}: {q}", fontsize=10)
            if j == 0:
                ax.set_ylabel("FRC")
            if i == len(doses) - 1:
                ax.set_xlabel("spatial frequency (cycles/pixel)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=arm_colour(a, arms), label=a, **_line_style(a)) for a in arms]
    handles += [Line2D([], [], color="0.3", ls="--", lw=0.8, label="0.5 threshold"),
                Line2D([], [], color="0.3", ls=":", lw=0.8, label="1/7 threshold")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5),
               fontsize=10)
    study = data[0].extra.get("study", "")
    what = ("between the reconstructions of the two interleaved half scans (no ground truth)"
            if key == "frc_halves" else "with the ground truth (aligned, evaluation region)")
    fig.suptitle(f"Fourier ring correlation {what}" + (f": study {study}" if study else "")
                 + "\nrows: dose (photons/exposure); the resolution is where a curve crosses a threshold")
    save(fig, png)


def plot_gt_free_grids(csv_path, residual_png, frc_png, overlap_targets: dict | None = None) -> None:
    """The ground-truth-free grids (rows: dose, columns: overlap; one panel per arm): the data
    residual (mean Poisson deviance per pattern, log colour scale) and the FRC 1/7 resolution of
    the half-scan reconstructions (amplitude and phase). Lower is better in both (dark)."""
    plt = pyplot()
    from matplotlib.colors import LogNorm, Normalize

    t = _load(csv_path)
    xl = _overlap_labels(t, overlap_targets)
    yl = [dose_label(d) for d in t.doses]
    w = max(2.4, 1.1 * len(t.overlaps) + 1.2)
    h = max(2.0, 0.55 * len(t.doses) + 1.3)
    cmap = plt.get_cmap("viridis_r")
    for png, metric, quantities, fmt in (
            (residual_png, "poisson_deviance", ("data",), "{:.0f}"),
            (frc_png, "frc17_px_halves", ("amplitude", "phase"), "{:.1f}")):
        if _missing_metric(t, metric, png):
            continue
        vals = np.concatenate([t.matrix(a, q, metric).ravel() for a in t.arms for q in quantities])
        vals = vals[np.isfinite(vals)]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (1.0, 10.0)
        norm = (LogNorm(max(lo, 1e-3), max(hi, lo * 1.01, 1e-2)) if metric == "poisson_deviance"
                else Normalize(min(lo, 2.0), max(hi, 2.5)))
        fig, axes = plt.subplots(len(quantities), len(t.arms), squeeze=False,
                                 figsize=(max(w * len(t.arms) + 1.2, 8.0),
                                          h * len(quantities) + 0.9), constrained_layout=True)
        im = None
        name = _METRIC_NAMES[metric]
        for i, q in enumerate(quantities):
            for j, arm in enumerate(t.arms):
                ax = axes[i, j]
                im = _annotated_panel(ax, t.matrix(arm, q, metric), cmap, norm, xl, yl, fmt)
                ax.set_title(arm if q == "data" else f"{arm}: {q}")
                _label_grid_axes(ax, 1 if i == len(quantities) - 1 else 0, j)
        cb = fig.colorbar(im, ax=axes, shrink=0.8)
        cb.set_label("deviance per pattern" if metric == "poisson_deviance" else "pixels")
        fig.suptitle(f"Ground-truth-free: {name}, lower is better\nstudy {t.study}, {t.scale} "
                     "scale; rows: dose (photons/exposure), columns: overlap view")
        save(fig, png)


def _loss_name(arm: str) -> str:
    if arm.startswith(("pinn", "adapted")):
        return "Poisson negative log-likelihood"
    if arm == "baseline":
        return "MAE on amplitude and phase"
    return "loss"


def _normalised(loss: np.ndarray, val: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """A cell's training and validation losses divided by its first finite training loss (the
    Poisson loss grows with the counts, so raw curves of different doses do not compare); when a
    loss is not positive, (loss - best) / (first - best) instead. Returns (loss, val, ratio)."""
    first = loss[np.isfinite(loss)]
    if not first.size:
        return loss, val, True
    both = np.concatenate([loss, val]) if val is not None else loss
    both = both[np.isfinite(both)]
    if both.min() > 0:
        return loss / first[0], (val / first[0] if val is not None else None), True
    lo = both.min()
    span = (first[0] - lo) or 1.0
    return (loss - lo) / span, ((val - lo) / span if val is not None else None), False


def plot_loss_curves(history_paths, labels, png) -> None:
    """Training (solid) and validation (dashed) loss per epoch, each cell's curves divided by its
    first-epoch training loss (:func:`_normalised`) so that cells of different doses compare;
    one panel per arm (the first word of each label, e.g. ``'pinn_g1 1e3 dense'``), two panels a
    row, one colour per cell, one legend under the panels."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    history_paths, labels = list(history_paths), list(labels)
    if len(history_paths) != len(labels):
        raise PtychoError(f"{len(history_paths)} history files but {len(labels)} labels")
    if not history_paths:
        message_figure(png, "Training loss", "No trained models in this study.")
        return
    groups: dict[str, list] = {}
    cells: list[str] = []
    for path, label in zip(history_paths, labels):
        arm, _, rest = str(label).partition(" ")
        groups.setdefault(arm, []).append((rest or arm, read_history(path)))
        if (rest or arm) not in cells:
            cells.append(rest or arm)
    arms = sorted(groups, key=arm_sort_key)
    ncol = 1 if len(arms) == 1 else 2
    nrow = math.ceil(len(arms) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol + 0.4, 3.9 * nrow + 1.6),
                             squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(k % 10) for k, c in enumerate(cells)}
    any_shifted = False
    for ax, arm in zip(axes.ravel(), arms):
        shown = []
        for cell, h in groups[arm]:
            ep = np.asarray(h["epoch"])
            loss = np.asarray(h["loss"], dtype=float)
            val = (np.asarray(h["val_loss"], dtype=float)
                   if "val_loss" in h and np.isfinite(h["val_loss"]).any() else None)
            loss, val, ratio = _normalised(loss, val)
            any_shifted |= not ratio
            ax.plot(ep, loss, "-", color=colour[cell], lw=1.6)
            shown.append(loss)
            if val is not None:
                ax.plot(ep, val, "--", color=colour[cell], lw=1.4)
                shown.append(val)
        v = np.concatenate(shown) if shown else np.array([])
        v = v[np.isfinite(v)]
        if v.size and v.min() > 0 and v.max() / v.min() > 8:  # a log axis, plain tick labels
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{arm} ({_loss_name(arm)})", fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss / first-epoch training loss")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.ravel()[len(arms):]:
        ax.axis("off")
    handles = [Line2D([], [], color=colour[c], lw=2, label=c) for c in cells]
    handles += [Line2D([], [], color="0.3", ls="-", label="training"),
                Line2D([], [], color="0.3", ls="--", label="validation")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6),
               title="cell (dose overlap replicate)", fontsize=10)
    fig.suptitle("Training loss per epoch, each cell divided by its first-epoch training loss "
                 "(the Poisson loss grows with the dose)\nsolid: training, dashed: validation"
                 + ("; a loss that is not positive: (loss - best) / (first - best)"
                               if any_shifted else ""))
    save(fig, png)


__all__ = [
    "plot_delta_grid",
    "plot_frc_curves",
    "plot_gt_free_grids",
    "plot_loss_curves",
    "plot_metric_grid",
    "plot_metric_vs_dose",
]
