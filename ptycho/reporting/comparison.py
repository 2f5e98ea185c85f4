"""One cell's reconstructions side by side: ground truth, each arm (aligned) and its error maps."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ptycho.errors import PtychoError
from ptycho.reporting._figures import pyplot, save
from ptycho.reporting.records import load_records


def read_aligned(path, require_truth: bool = True) -> tuple[np.ndarray, np.ndarray | None,
                                                             np.ndarray]:
    """(aligned, truth, mask) of an evaluation ``aligned.h5``; mask as bool; truth None when the
    file has none (an evaluation without ground truth) and ``require_truth`` is False."""
    path = Path(path)
    if not path.is_file():
        raise PtychoError(f"{path}: aligned reconstruction not found")
    with h5py.File(path, "r") as f:
        keys = ("aligned", "truth", "mask") if require_truth or "truth" in f else ("aligned", "mask")
        for key in keys:
            if key not in f:
                raise PtychoError(f"{path}: missing dataset '/{key}'")
        a, m = f["aligned"][()], f["mask"][()].astype(bool)
        t = f["truth"][()] if "truth" in f else None
    if not (a.shape == m.shape == (a.shape if t is None else t.shape)) or a.ndim != 2:
        raise PtychoError(f"{path}: aligned {a.shape}, truth "
                          f"{None if t is None else t.shape} and mask {m.shape} differ")
    if not m.any():
        raise PtychoError(f"{path}: the evaluation mask is empty")
    return a, t, m


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def plot_cell_comparison(aligned_paths, arm_ids, metric_paths, png, title: str) -> None:
    """Columns: ground truth, then each arm. Rows: amplitude, |amplitude error|, phase (rad),
    |phase error| (rad, wrapped). Images are cropped to the bounding box of the evaluation region;
    pixels outside the region are grey. Panel titles give each arm's SSIM (and MAE for errors)."""
    plt = pyplot()
    aligned_paths, arm_ids, metric_paths = list(aligned_paths), list(arm_ids), list(metric_paths)
    if not (len(aligned_paths) == len(arm_ids) == len(metric_paths)) or not arm_ids:
        raise PtychoError(f"plot_cell_comparison: {len(aligned_paths)} aligned files, {len(arm_ids)} "
                          f"arms and {len(metric_paths)} metrics files must be equal and non-zero")
    recs = [read_aligned(p, require_truth=False) for p in aligned_paths]
    metrics = load_records(metric_paths)
    truth, mask = recs[0][1], recs[0][2]
    if truth is None:
        _plot_without_truth(recs, arm_ids, metrics, png, title)
        return
    sl = _bbox(mask)
    m = mask[sl]
    t_amp, t_ph = np.abs(truth[sl]), np.angle(truth[sl])
    amp_lim = (float(t_amp[m].min()), float(t_amp[m].max()))
    ph_lim = (float(t_ph[m].min()), float(t_ph[m].max()))
    cols = []
    for (a, t, _), arm in zip(recs, arm_ids):
        a = a[sl]
        t = t[sl]
        cols.append({
            "arm": arm, "amp": np.abs(a), "ph": np.angle(a),
            "amp_err": np.abs(np.abs(a) - np.abs(t)),
            "ph_err": np.abs(np.angle(a * np.conj(t))),
        })
    err_amp_max = max(float(np.percentile(c["amp_err"][m], 99)) for c in cols) or 1e-6
    err_ph_max = max(float(np.percentile(c["ph_err"][m], 99)) for c in cols) or 1e-6

    rows = (("amp", "amplitude", "gray", amp_lim, "amplitude (a.u.)"),
            ("amp_err", "|amplitude error|", "magma", (0.0, err_amp_max), "|error| (a.u.)"),
            ("ph", "phase", "twilight_shifted", ph_lim, "phase (rad)"),
            ("ph_err", "|phase error|", "magma", (0.0, err_ph_max), "|error| (rad)"))
    n_c = 1 + len(cols)
    hh, ww = m.shape
    panel = 2.6
    aspect = hh / max(ww, 1)
    fig, axes = plt.subplots(4, n_c, figsize=(panel * n_c + 1.3, panel * aspect * 4 + 1.6),
                             squeeze=False, constrained_layout=True)
    for i, (key, label, cmap_name, lim, cb_label) in enumerate(rows):
        cmap = plt.get_cmap(cmap_name).with_extremes(bad="0.75")
        im = None
        for j in range(n_c):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
                if key in ("amp", "ph"):
                    img = t_amp if key == "amp" else t_ph
                    im = ax.imshow(np.ma.masked_where(~m, img), cmap=cmap, vmin=lim[0], vmax=lim[1])
                    ax.set_title("ground truth")
                else:
                    for s in ax.spines.values():
                        s.set_visible(False)
                continue
            c, mt = cols[j - 1], metrics[j - 1]
            q = "amplitude" if key.startswith("amp") else "phase"
            vals = mt.metrics.get(q, {})
            im = ax.imshow(np.ma.masked_where(~m, c[key]), cmap=cmap, vmin=lim[0], vmax=lim[1])
            if key in ("amp", "ph"):
                ax.set_title(f"{c['arm']}\n{q} SSIM {_num(vals.get('ssim'))}", fontsize=10)
            else:
                unit = " rad" if q == "phase" else ""
                ax.set_title(f"{c['arm']}: MAE {_num(vals.get('mae'), '.3g')}{unit}", fontsize=10)
        cb = fig.colorbar(im, ax=axes[i, :].tolist(), shrink=0.9, pad=0.01)
        cb.set_label(cb_label)
    fig.suptitle(f"{title}\ncropped to the evaluation region ({int(m.sum())} px scored, grey: "
                 "outside); aligned identically for every arm")
    save(fig, png)


def _plot_without_truth(recs, arm_ids, metrics, png, title: str) -> None:
    """Columns: each arm; rows: amplitude and phase (mean phase over the region removed), colour
    limits shared by the arms (1st-99th percentile of the region); titles give the data residual
    and the half-scan FRC 1/7 of each arm."""
    plt = pyplot()
    mask = recs[0][2]
    sl = _bbox(mask)
    m = mask[sl]
    amps = [np.abs(a[sl]) for a, _, _ in recs]
    phases = [np.angle(a[sl]) for a, _, _ in recs]
    lims = [tuple(np.percentile(np.concatenate([x[m] for x in xs]), (1, 99))) for xs in (amps, phases)]
    hh, ww = m.shape
    panel = 2.6
    fig, axes = plt.subplots(2, len(recs), figsize=(panel * len(recs) + 1.3,
                                                    panel * hh / max(ww, 1) * 2 + 1.6),
                             squeeze=False, constrained_layout=True)
    for i, (imgs, label, cmap_name, lim) in enumerate(
            ((amps, "amplitude", "gray", lims[0]), (phases, "phase (rad)", "twilight_shifted",
                                                    lims[1]))):
        cmap = plt.get_cmap(cmap_name).with_extremes(bad="0.75")
        im = None
        for j, (img, arm, mt) in enumerate(zip(imgs, arm_ids, metrics)):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            im = ax.imshow(np.ma.masked_where(~m, img), cmap=cmap, vmin=lim[0], vmax=lim[1])
            vals = mt.metrics
            if i == 0:
                dev = (vals.get("data") or {}).get("poisson_deviance")
                ax.set_title(f"{arm}\nresidual {_num(dev, '.4g')}", fontsize=10)
            else:
                frc = (vals.get("phase") or {}).get("frc17_px_halves")
                ax.set_title(f"{arm}\nphase FRC 1/7, halves: {_num(frc, '.2f')} px", fontsize=10)
            if j == 0:
                ax.set_ylabel(label)
        fig.colorbar(im, ax=axes[i, :].tolist(), shrink=0.9, pad=0.01).set_label(label)
    fig.suptitle(f"{title}\nno ground truth: reconstructions only ({int(m.sum())} px region, "
                 "grey: outside)\nresidual: Poisson deviance per pattern (lower is better)",
                 fontsize=10)
    save(fig, png)


def _num(v, fmt: str = ".3f") -> str:
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return "n/a"


__all__ = ["plot_cell_comparison", "read_aligned"]
