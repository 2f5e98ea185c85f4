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
from ptycho.reporting._figures import arm_colour, message_figure, pyplot, save
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
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=10, color="black")
                continue
            r, g, b, _ = cmap(norm(v))
            light = 0.299 * r + 0.587 * g + 0.114 * b > 0.55
            note = notes[i][j] if notes else ""
            ax.text(j, i, fmt.format(v), ha="center", va="bottom" if note else "center",
                    fontsize=10, color="black" if light else "white", fontweight="bold")
            if note:
                ax.text(j, i, note, ha="center", va="top", fontsize=7.5,
                        color="black" if light else "white")
    ax.set_facecolor("0.85")
    return im


def plot_metric_grid(csv_path, png, metric: str = "ssim", overlap_targets: dict | None = None) -> None:
    """Grid of ``metric`` (rows: dose, columns: overlap), one panel per arm, amplitude and phase as
    two rows of panels, values printed in the cells, one shared colour scale 0..1."""
    plt = pyplot()
    from matplotlib.colors import Normalize

    t = _load(csv_path)
    if _missing_metric(t, metric, png):
        return
    name = _METRIC_NAMES.get(metric, metric)
    n_arm = len(t.arms)
    w = max(2.4, 1.1 * len(t.overlaps) + 1.2)
    h = max(2.0, 0.55 * len(t.doses) + 1.3)
    fig, axes = plt.subplots(2, n_arm, figsize=(max(w * n_arm + 1.2, 8.0), 2 * h + 0.8), squeeze=False,
                             constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    norm = Normalize(0.0, 1.0)
    xl = _overlap_labels(t, overlap_targets)
    yl = [dose_label(d) for d in t.doses]
    im = None
    for i, q in enumerate(("amplitude", "phase")):
        for j, arm in enumerate(t.arms):
            ax = axes[i, j]
            im = _annotated_panel(ax, t.matrix(arm, q, metric), cmap, norm, xl, yl, "{:.3f}",
                                  t.notes(arm, q, metric))
            ax.set_title(f"{arm}: {q} {name}")
            _label_grid_axes(ax, i, j)
    cb = fig.colorbar(im, ax=axes, shrink=0.8)
    cb.set_label(f"{name} (1 = perfect)")
    fig.suptitle(f"{name} of the aligned test-region reconstruction\nstudy {t.study}, {t.scale} "
                 "scale; rows: dose (photons/exposure), columns: overlap view; below each value "
                 "its 95% interval (block bootstrap) or ± sd over replicates")
    save(fig, png)


def _comparisons(arms) -> list[tuple[str, str]]:
    pinns = [a for a in arms if a.startswith("pinn_g")]
    others = [a for a in ("baseline", "iterative", "hybrid") if a in arms]
    return [(p, o) for p in pinns for o in others]


def plot_delta_grid(csv_path, png, metric: str = "ssim", overlap_targets: dict | None = None,
                    paired=None) -> None:
    """PINN minus baseline, iterative and hybrid ``metric`` (default SSIM), for each PINN
    gridsize, amplitude and phase rows, diverging colour map centred at 0 (blue: PINN better).
    Comparisons whose arm is absent from the table are skipped. ``paired``
    (``ptycho.reporting.uncertainty.collect_paired_differences`` entries) adds each difference's
    95% interval below it."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    t = _load(csv_path)
    if _missing_metric(t, metric, png):
        return
    name = _METRIC_NAMES.get(metric, metric)
    comps = _comparisons(t.arms)
    if not comps:
        message_figure(png, f"{name} differences: study {t.study}, {t.scale} scale",
                       f"No comparison possible: the study's arms are {', '.join(t.arms)}\n"
                       "(needs a PINN arm and a baseline, iterative or hybrid arm).")
        return
    deltas = {(q, p, o): t.matrix(p, q, metric) - t.matrix(o, q, metric)
              for q in ("amplitude", "phase") for p, o in comps}
    finite = np.concatenate([np.abs(m[np.isfinite(m)]) for m in deltas.values()])
    lim = max(0.05, float(finite.max()) if finite.size else 0.05)
    norm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    cmap = plt.get_cmap("RdBu")
    w = max(2.4, 1.1 * len(t.overlaps) + 1.2)
    h = max(2.0, 0.55 * len(t.doses) + 1.3)
    fig, axes = plt.subplots(2, len(comps), figsize=(max(w * len(comps) + 1.2, 8.0), 2 * h + 0.9),
                             squeeze=False, constrained_layout=True)
    xl = _overlap_labels(t, overlap_targets)
    yl = [dose_label(d) for d in t.doses]
    im = None
    for i, q in enumerate(("amplitude", "phase")):
        for j, (p, o) in enumerate(comps):
            ax = axes[i, j]
            im = _annotated_panel(ax, deltas[(q, p, o)], cmap, norm, xl, yl, "{:+.3f}",
                                  _paired_notes(paired, t, p, o, q, metric))
            ax.set_title(f"{q} {name}: {p} − {o}")
            _label_grid_axes(ax, i, j)
    cb = fig.colorbar(im, ax=axes, shrink=0.8)
    cb.set_label(f"Δ {name} (PINN − other; > 0: PINN better)")
    fig.suptitle(f"{name} difference, PINN minus {' / '.join(dict.fromkeys(o for _, o in comps))}"
                 f"\nstudy {t.study}, "
                 f"{t.scale} scale; blue: PINN better, red: PINN worse"
                 + ("; below: paired 95% interval" if paired else ""))
    save(fig, png)


def _paired_notes(paired, t: _Table, a: str, b: str, q: str, metric: str):
    """``[low, high]`` of the paired difference a - b per grid cell (None without entries)."""
    if not paired:
        return None
    found = {(e["dose"], e["overlap"]): e for e in paired
             if (e["arm_a"], e["arm_b"], e["quantity"], e["metric"]) == (a, b, q, metric)}
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


def plot_metric_vs_dose(csv_path, png, rows=_VS_DOSE_ROWS, overlap_targets: dict | None = None) -> None:
    """Metric versus dose (log axis), one line per arm, one column of panels per overlap view;
    rows: amplitude/phase SSIM, PSNR and FRC 1/7 resolution."""
    plt = pyplot()
    t = _load(csv_path)
    n_r, n_c = len(rows), len(t.overlaps)
    fig, axes = plt.subplots(n_r, n_c, figsize=(max(4.2 * n_c + 0.5, 8.0), 2.2 * n_r + 1.0), squeeze=False,
                             sharex=True, constrained_layout=True)
    x = np.array(t.doses)
    for j, ov in enumerate(t.overlaps):
        f = (overlap_targets or {}).get(ov)
        for i, (q, m) in enumerate(rows):
            ax = axes[i, j]
            for arm in t.arms:
                y = np.array([t.get(d, ov, arm, q, m) for d in t.doses])
                if np.isfinite(y).any():
                    b = np.array([t.bounds(d, ov, arm, q, m) for d in t.doses])
                    ok = np.isfinite(b).all(axis=1)
                    err = np.vstack([np.where(ok, y - b[:, 0], 0.0), np.where(ok, b[:, 1] - y, 0.0)])
                    ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, color=arm_colour(arm, t.arms),
                                label=arm)
            ax.set_xscale("log")
            ax.set_xticks(x, [dose_label(d) for d in x])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            if m in ("ssim", "ms_ssim"):
                ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
            ax.set_ylabel(f"{q} {_METRIC_NAMES.get(m, m)}")
            if i == 0:
                ax.set_title(f"overlap: {ov}" + (f" (f = {f:.2f})" if f is not None else ""))
            if i == n_r - 1:
                ax.set_xlabel("dose (photons/exposure, log scale)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), title="arm")
    fig.suptitle(f"Reconstruction quality versus dose: study {t.study}, {t.scale} scale\n"
                 "SSIM: higher is better; PSNR: higher is better; FRC 1/7 resolution: lower is "
                 "better; error bars: 95% intervals")
    save(fig, png)


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
            ax.plot(fr, c, color=arm_colour(m.arm, arms), label=m.arm, lw=1.4)
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

    handles = [Line2D([], [], color=arm_colour(a, arms), label=a) for a in arms]
    handles += [Line2D([], [], color="0.3", ls="--", label="0.5 threshold"),
                Line2D([], [], color="0.3", ls=":", label="1/7 threshold")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
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


def _loss_ylabel(arm: str) -> str:
    if arm.startswith("pinn"):
        return "loss (Poisson negative log-likelihood)"
    if arm == "baseline":
        return "loss (MAE on amplitude and phase)"
    return "loss"


def plot_loss_curves(history_paths, labels, png) -> None:
    """Training (solid) and validation (dashed) loss per epoch; one panel per arm (the first word
    of each label, e.g. ``'pinn_g1 1e3 dense'``), one colour per cell."""
    plt = pyplot()
    history_paths, labels = list(history_paths), list(labels)
    if len(history_paths) != len(labels):
        raise PtychoError(f"{len(history_paths)} history files but {len(labels)} labels")
    if not history_paths:
        message_figure(png, "Training loss", "No trained models in this study.")
        return
    groups: dict[str, list] = {}
    for path, label in zip(history_paths, labels):
        arm, _, rest = str(label).partition(" ")
        groups.setdefault(arm, []).append((rest or arm, read_history(path)))
    arms = sorted(groups, key=arm_sort_key)
    fig, axes = plt.subplots(1, len(arms), figsize=(max(5.2 * len(arms), 7.0), 4.2), squeeze=False,
                             constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for ax, arm in zip(axes[0], arms):
        values = []
        for k, (cell, h) in enumerate(groups[arm]):
            c = cmap(k % 10)
            ep = np.asarray(h["epoch"])
            loss = np.asarray(h["loss"])
            ax.plot(ep, loss, "-", color=c, label=f"{cell}")
            values.append(loss[np.isfinite(loss)])
            if "val_loss" in h and np.isfinite(h["val_loss"]).any():
                val = np.asarray(h["val_loss"])
                ax.plot(ep, val, "--", color=c)
                values.append(val[np.isfinite(val)])
        v = np.concatenate(values) if values else np.array([])
        if v.size and v.min() > 0 and v.max() / v.min() > 20:
            ax.set_yscale("log")
        ax.set_title(f"{arm}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_loss_ylabel(arm))
        ax.grid(True, alpha=0.3)
        ax.legend(title="cell (dose overlap)", fontsize=8, title_fontsize=8)
    fig.suptitle("Training loss per epoch (solid: training, dashed: validation)")
    save(fig, png)


__all__ = [
    "plot_delta_grid",
    "plot_frc_curves",
    "plot_gt_free_grids",
    "plot_loss_curves",
    "plot_metric_grid",
    "plot_metric_vs_dose",
]
