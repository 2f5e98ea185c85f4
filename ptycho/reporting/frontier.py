"""The quality-time frontier of a study: how good is each arm's image after t seconds?

Per cell, the solver arms give curves of SSIM against cumulative wall time from their
convergence snapshots (each scored like every final object, ``metrics.json`` key ``snapshots``):
``iterative`` starts flat, so its epoch-0 point is the cell's flat-object reference at 0 s;
``hybrid`` starts from a network arm's reconstruction, so its epoch-0 point is that network's
scored reconstruction at the network's inference time. The network arms are points (inference and
stitching time). Wall times exclude process start-up and the pty-chi / TensorFlow imports, as in
the rest of the report.

From these, per cell and quantity (amplitude, phase SSIM):

* network rows (``arm`` = pinn_g1, pinn_g2, baseline): ``target_ssim`` is the network's SSIM;
  ``iterative_time_s`` / ``iterative_epochs`` are when the flat-start solver first reaches it
  (linear interpolation between neighbouring snapshots; 0 when the flat start already does);
  ``speedup`` = ``iterative_time_s`` / the network's time (the network's speed-up at matched
  quality). When no snapshot reaches the target, ``iterative_reached`` is false and the time,
  epochs and speed-up are empty ("not reached"), never a number.
* hybrid rows (``arm`` = hybrid): ``target_ssim`` is the flat-start solver's final SSIM;
  ``iterative_*`` are when the flat-start solver first reaches it, ``arm_*`` when the hybrid does
  (its time includes the network's inference); ``epochs_saved`` = ``iterative_epochs`` -
  ``arm_epochs`` (negative: the hybrid needs more), ``speedup`` = ``iterative_time_s`` /
  ``arm_time_s``.

``report/quality_time.csv`` has exactly the columns ``QT_COLUMNS``; empty fields mean "not
reached" or "does not apply" (the ``*_reached`` columns say which).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from ptycho.config import dose_label, is_network_arm, is_solver_arm
from ptycho.data.io import write_text
from ptycho.errors import PtychoError
from ptycho.reporting import QUANTITIES, arm_sort_key
from ptycho.reporting._figures import arm_colour, legend_columns, message_figure, pyplot, save

QT_COLUMNS = ("study", "scale", "dose", "overlap", "replicate", "arm", "quantity", "target_ssim",
              "iterative_reached", "iterative_epochs", "iterative_time_s", "arm_reached",
              "arm_epochs", "arm_time_s", "speedup", "epochs_saved")


def first_crossing(xs, ys, target: float) -> float | None:
    """The smallest x at which the piecewise-linear curve through (``xs``, ``ys``) reaches
    ``target``: the first point with y >= target, linearly interpolated from the point before it
    (``xs[0]`` when the first point already reaches it). None when no point reaches it (a value
    that is not finite never does)."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys):
        raise PtychoError(f"first_crossing: {len(xs)} x values but {len(ys)} y values")
    for i, y in enumerate(ys):
        if y >= target:
            if i == 0:
                return xs[0]
            x0, y0 = xs[i - 1], ys[i - 1]
            return x0 + (target - y0) / (y - y0) * (xs[i] - x0)
    return None


@dataclass(frozen=True)
class Curve:
    """One solver arm's quality against time in one cell: epoch-0 start point, then snapshots.
    ``ssim[q]`` has one value per point; times are cumulative wall seconds."""

    epochs: tuple[float, ...]
    times: tuple[float, ...]
    ssim: dict

    def reach(self, target: float, q: str) -> tuple[float | None, float | None]:
        """(epochs, seconds) at which the curve first reaches ``target`` SSIM of quantity ``q``."""
        return (first_crossing(self.epochs, self.ssim[q], target),
                first_crossing(self.times, self.ssim[q], target))


@dataclass
class CellArms:
    """What the report knows about one cell: each arm's final SSIM and wall time, the solver
    arms' snapshots, the flat-object reference and the hybrid's start arm."""

    dose: float
    overlap: str
    ssim: dict  # arm -> {quantity: final SSIM}
    time: dict  # arm -> wall time (s)
    snapshots: dict  # solver arm -> list of snapshot entries of metrics.json
    flat: dict  # quantity -> flat-object SSIM
    start_arm: str | None = None
    iterations: int | None = None
    replicate: int = 0  # the cell replicate (its own noise draw, scan and scores)

    def curve(self, arm: str) -> Curve | None:
        """The solver arm's curve with its epoch-0 start point, or None when the arm (or, for
        the hybrid, its start network) is not in this cell."""
        if arm not in self.snapshots:
            return None
        if arm == "iterative":
            t0, start = 0.0, self.flat
        elif self.start_arm in self.ssim:
            t0, start = self.time[self.start_arm], self.ssim[self.start_arm]
        else:
            return None
        snaps = self.snapshots[arm]
        return Curve(
            epochs=(0.0,) + tuple(float(s["epoch"]) for s in snaps),
            times=(float(t0),) + tuple(float(s["wall_time_s"]) for s in snaps),
            ssim={q: (float(start[q]),) + tuple(_ssim(s["metrics"], q) for s in snaps)
                  for q in QUANTITIES},
        )


def _ssim(metrics: dict, q: str) -> float:
    v = (metrics.get(q) or {}).get("ssim")
    return float("nan") if v is None else float(v)


def collect_cells(records) -> list[CellArms]:
    """One :class:`CellArms` per (dose, overlap, replicate) from metrics records
    (:func:`ptycho.reporting.records.load_records`), cells in order of dose, then first appearance
    of the overlap, then replicate; evaluations without ground truth are skipped. A solver arm
    without snapshots is an error (its curve would be invented)."""
    cells: dict[tuple, CellArms] = {}
    for m in records:
        if not m.ground_truth:
            continue  # no SSIM without a ground truth: no quality-time curve
        key = m.cell()
        arm = str(m.arm)
        flat = (m.reference or {}).get("flat_object") or {}
        c = cells.setdefault(key, CellArms(dose=key[0], overlap=key[1], ssim={}, time={},
                                           snapshots={}, flat={}, replicate=key[2]))
        c.ssim[arm] = {q: _ssim(m.metrics, q) for q in QUANTITIES}
        t = m.recon_wall_time_s
        c.time[arm] = float("nan") if t is None else float(t)
        if flat and not c.flat:
            c.flat = {q: _ssim(flat, q) for q in QUANTITIES}
        if is_solver_arm(arm):
            snaps = m.snapshots
            if not snaps:
                raise PtychoError(f"{m.path}: the {arm} arm has no convergence 'snapshots'; "
                                  "rerun its reconstruction and evaluation")
            c.snapshots[arm] = snaps
            info = m.recon_info or {}
            if arm == "hybrid":
                c.start_arm = info.get("start_arm")
            elif info.get("iterations") is not None:
                c.iterations = int(info["iterations"])
    overlaps = list(dict.fromkeys(k[1] for k in cells))
    return [cells[k] for k in sorted(cells, key=lambda k: (k[0], overlaps.index(k[1]), k[2]))]


def matched_quality(cells) -> list[dict]:
    """Rows of the matched-quality table (keys ``QT_COLUMNS`` without study and scale; the
    module docstring defines them). Needs the iterative arm; hybrid rows need the hybrid arm."""
    rows = []
    for c in cells:
        it = c.curve("iterative")
        if it is None:
            continue
        networks = sorted((a for a in c.ssim if is_network_arm(a)), key=arm_sort_key)
        hyb = c.curve("hybrid")
        for q in QUANTITIES:
            for arm in networks:
                target = c.ssim[arm][q]
                e, t = it.reach(target, q)
                net_t = c.time[arm]
                rows.append(_row(c, arm, q, target, e, t, arm_epochs=None, arm_time=net_t,
                                 arm_reached=True,
                                 speedup=None if t is None or not net_t > 0 else t / net_t))
            if hyb is not None:
                target = it.ssim[q][-1]
                e, t = it.reach(target, q)
                he, ht = hyb.reach(target, q)
                rows.append(_row(c, "hybrid", q, target, e, t, arm_epochs=he, arm_time=ht,
                                 arm_reached=he is not None,
                                 speedup=None if ht is None or t is None else t / ht,
                                 epochs_saved=None if he is None or e is None else e - he))
    return rows


def _row(c: CellArms, arm, q, target, it_epochs, it_time, arm_epochs, arm_time, arm_reached,
         speedup, epochs_saved=None) -> dict:
    return {"dose": c.dose, "overlap": c.overlap, "replicate": c.replicate, "arm": arm,
            "quantity": q,
            "target_ssim": target, "iterative_reached": it_epochs is not None,
            "iterative_epochs": it_epochs, "iterative_time_s": it_time,
            "arm_reached": arm_reached, "arm_epochs": arm_epochs, "arm_time_s": arm_time,
            "speedup": speedup, "epochs_saved": epochs_saved, "iterations": c.iterations,
            "start_arm": c.start_arm}


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else repr(v)
    return str(v)


def write_quality_time_csv(rows, path, study: str, scale: str) -> None:
    """``report/quality_time.csv`` (atomically): one row per cell x arm x quantity."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(QT_COLUMNS)
    for r in rows:
        r = {**r, "study": study, "scale": scale}
        w.writerow([_csv_value(r[k]) for k in QT_COLUMNS])
    write_text(path, buf.getvalue())


def _secs(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def _match(r) -> str:
    """LSQML's time (epochs) to reach a target, or why not."""
    if r["iterative_epochs"] is None:
        it = r.get("iterations")
        return f"not reached{f' in {it} epochs' if it else ''}"
    if r["iterative_epochs"] == 0:
        return "0 (flat start)"
    return f"{r['iterative_time_s']:.2f} ({r['iterative_epochs']:.1f})"


def _speedup(r) -> str:
    return "—" if r["speedup"] is None else f"{r['speedup']:.2f}×"


def _view(overlap: str, replicate: int, rows) -> str:
    """The overlap column: the view, with the replicate when the study has several."""
    return f"{overlap} r{replicate}" if any(r["replicate"] for r in rows) else overlap


def frontier_markdown(rows) -> str:
    """The matched-quality and iterations-saved sections of ``summary.md``."""
    if not rows:
        return ""
    net = [r for r in rows if r["arm"] != "hybrid"]
    hyb = [r for r in rows if r["arm"] == "hybrid"]
    intro = ("How long the flat-start solver (pty-chi LSQML, arm iterative) needs to reach each "
             "network's SSIM: seconds (epochs), interpolated linearly between its convergence "
             "snapshots, whose first point is the flat start at 0 s. *Speed-up* is that time "
             "divided by the network's reconstruction time (> 1: the network is faster at equal "
             "quality); *not reached*: no snapshot reaches the network's SSIM. Figure: "
             "`figures/quality_time.png`; all numbers: `quality_time.csv`.")
    lines = ["## Quality against time: matched quality", "", intro, ""]
    header = ("| Dose (photons) | Overlap | Arm | Arm time (s) | Phase SSIM | LSQML to match, s "
              "(epochs) | Speed-up | Amp SSIM | LSQML to match, s (epochs) | Speed-up |")
    lines += [header, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    by = {(r["dose"], r["overlap"], r["replicate"], r["arm"], r["quantity"]): r for r in net}
    for key in dict.fromkeys((r["dose"], r["overlap"], r["replicate"], r["arm"]) for r in net):
        ph, am = by.get(key + ("phase",)), by.get(key + ("amplitude",))
        cells = [dose_label(key[0]), _view(key[1], key[2], rows), key[3],
                 _secs(ph["arm_time_s"])]
        for r in (ph, am):
            cells += [f"{r['target_ssim']:.3f}", _match(r), _speedup(r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if hyb:
        starts = ", ".join(sorted({str(r["start_arm"]) for r in hyb}))
        intro = (f"The hybrid arm runs the same LSQML schedule from a network's reconstruction "
                 f"({starts}) instead of a flat object. Target: the flat-start solver's final "
                 "SSIM. Epochs and seconds to first reach it (the hybrid's seconds include the "
                 "network's inference); *saved* = flat-start epochs - hybrid epochs; *time ratio* "
                 "= flat-start seconds / hybrid seconds.")
        header = ("| Dose (photons) | Overlap | Quantity | Target SSIM | LSQML flat start, s "
                  "(epochs) | Hybrid, s (epochs) | Epochs saved | Time ratio |")
        lines += ["## Quality against time: iterations a network start saves", "", intro, "",
                  header, "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in hyb:
            h = ("not reached" if r["arm_epochs"] is None
                 else f"{r['arm_time_s']:.2f} ({r['arm_epochs']:.1f})")
            saved = "—" if r["epochs_saved"] is None else f"{r['epochs_saved']:+.1f}"
            lines.append(f"| {dose_label(r['dose'])} | {_view(r['overlap'], r['replicate'], rows)} | "
                         f"{r['quantity']} | "
                         f"{r['target_ssim']:.3f} | {_match(r)} | {h} | {saved} | "
                         f"{_speedup(r)} |")
        lines.append("")
    return "\n".join(lines)


def plot_quality_time(records, png) -> None:
    """SSIM against wall time (log axis) per cell of metrics records (:func:`collect_cells`): rows
    dose, columns overlap x (amplitude, phase); network arms as points, the solver arms as curves
    through their snapshots (the hybrid's curve starts at its network's point), the flat-object
    SSIM as a dotted line."""
    plt = pyplot()
    cells = collect_cells(records)
    if not cells:
        message_figure(png, "Quality against time", "No metrics files with a ground truth were "
                       "given (a study without ground truth has no SSIM to plot).")
        return
    doses = sorted({c.dose for c in cells})
    overlaps = list(dict.fromkeys(c.overlap for c in cells))
    cols = [(ov, q) for ov in overlaps for q in QUANTITIES]
    arms = sorted({a for c in cells for a in c.ssim}, key=arm_sort_key)
    width = max(3.6 * len(cols) + 0.5, 8.0)
    fig, axes = plt.subplots(len(doses), len(cols), figsize=(width, 2.8 * len(doses) + 1.2),
                             squeeze=False, sharex=True, constrained_layout=True)
    for c in cells:
        i = doses.index(c.dose)
        for q in QUANTITIES:
            ax = axes[i, cols.index((c.overlap, q))]
            for arm in arms:
                if arm not in c.ssim:
                    continue
                colour = arm_colour(arm, arms)
                curve = c.curve(arm) if is_solver_arm(arm) else None
                if curve is None:
                    ax.plot([c.time[arm]], [c.ssim[arm][q]], "o", ms=7, color=colour, label=arm)
                    continue
                first = 0 if arm == "hybrid" else 1  # the flat start's 0 s is off a log axis
                ax.plot(curve.times[first:], curve.ssim[q][first:], marker=".", color=colour,
                        label=arm, ls="--" if arm == "hybrid" else "-")
            if q in c.flat:
                ax.axhline(c.flat[q], color="0.4", ls=":", lw=1.0)
    for i, d in enumerate(doses):
        for j, (ov, q) in enumerate(cols):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.25)
            ax.set_title(f"dose {dose_label(d)}, {ov}: {q}", fontsize=10)
            if j == 0:
                ax.set_ylabel("SSIM")
            if i == len(doses) - 1:
                ax.set_xlabel("wall time (s, log scale)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=arm_colour(a, arms), marker="." if is_solver_arm(a) else "o",
                      ls=("--" if a == "hybrid" else "-") if is_solver_arm(a) else "none", label=a)
               for a in arms]
    handles.append(Line2D([], [], color="0.4", ls=":", label="flat object"))
    fig.legend(handles=handles, loc="outside lower center",
               ncol=legend_columns(len(handles), width, 1.3, most=len(handles)))
    fig.suptitle("SSIM against reconstruction wall time (log axis); rows: dose (photons/exposure)\n"
                 "networks: points (inference and stitching); LSQML from a flat start (iterative)\n"
                 "and from a network's output (hybrid, its inference included): curves through "
                 "snapshots", fontsize=10)
    save(fig, png)


__all__ = [
    "QT_COLUMNS",
    "CellArms",
    "Curve",
    "collect_cells",
    "first_crossing",
    "frontier_markdown",
    "matched_quality",
    "plot_quality_time",
    "write_quality_time_csv",
]
