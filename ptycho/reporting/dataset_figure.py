"""Summary figure of one simulated cell (train + test dataset files)."""

from __future__ import annotations

import numpy as np

from ptycho.config import dose_label
from ptycho.data.dataset import Dataset
from ptycho.reporting._figures import pyplot, save


def plot_dataset_summary(train_path, test_path, png_path) -> None:
    """Object amplitude and phase (rad), probe amplitude and phase (rad), the scan positions
    coloured by split on the object extent with the split row, and one test diffraction pattern
    on a log scale (photons)."""
    plt = pyplot()
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Circle, Rectangle

    with Dataset(train_path, require_object=False) as tr, \
            Dataset(test_path, require_object=False) as te:
        obj = te.object if te.has_object else None
        shape = tuple(te.object_shape)
        probe = te.probe
        N = te.N
        pos_tr, pos_te = tr.positions, te.positions
        attrs = te.attrs
        cfg = te.config
        pattern = te.read([0])[0] if te.n else np.zeros((N, N), np.float32)
        dose = te.dose
        n_tr, n_te = tr.n, te.n
        f_meas_tr = tr.attrs.get("overlap_measured")
    H, W = shape
    row = cfg.get("split_row")
    if row is None and len(pos_tr) and len(pos_te):
        row = 0.5 * (pos_tr[:, 0].max() + N / 2 + pos_te[:, 0].min() - N / 2)
    study = (cfg.get("study") or {}).get("study", "")
    view = cfg.get("overlap_view", "")
    diam = attrs.get("probe_diameter")

    fig, axes = plt.subplots(2, 3, figsize=(15, 9.2), constrained_layout=True)
    ext = (-0.5, W - 0.5, H - 0.5, -0.5)

    def show(ax, img, title, cmap, label, **kw):
        im = ax.imshow(img, cmap=cmap, extent=kw.pop("extent", None), **kw)
        ax.set_title(title)
        cb = fig.colorbar(im, ax=ax, shrink=0.85)
        cb.set_label(label)
        return im

    if obj is not None:
        show(axes[0, 0], np.abs(obj), f"object amplitude ({H} x {W} px)", "gray", "amplitude",
             extent=ext)
        show(axes[0, 1], np.angle(obj), "object phase", "twilight_shifted", "phase (rad)",
             extent=ext)
        backdrop = np.abs(obj)
    else:  # external data without ground truth: where the scans put light instead
        from ptycho.evaluation.region import illumination_map

        backdrop = illumination_map(shape, np.concatenate([pos_tr, pos_te]), probe)
        show(axes[0, 0], backdrop, f"no ground truth: summed probe intensity ({H} x {W} px)",
             "gray", "sum |P|^2", extent=ext)
        axes[0, 1].axis("off")
        axes[0, 1].text(0.5, 0.5, "no ground-truth object\n(external data, data/ground_truth: "
                        "false)", ha="center", va="center", fontsize=12)
    for ax in axes[0, :2]:
        ax.set_xlabel("x (object pixels)")
        ax.set_ylabel("y (object pixels)")

    ax = axes[0, 2]
    ax.imshow(backdrop, cmap="gray", alpha=0.35, extent=ext)
    ax.scatter(pos_tr[:, 1], pos_tr[:, 0], s=9, c="tab:blue", label=f"train ({n_tr})")
    ax.scatter(pos_te[:, 1], pos_te[:, 0], s=9, c="tab:orange", label=f"test ({n_te})")
    if row is not None:
        ax.axhline(row, color="k", ls="--", lw=1.2, label=f"split row y = {row:g}")
    if len(pos_te):
        cy, cx = pos_te[len(pos_te) // 2]
        ax.add_patch(Rectangle((cx - N / 2, cy - N / 2), N, N, fill=False, ec="tab:red", lw=1,
                               label=f"one patch ({N} x {N} px)"))
        if diam:
            ax.add_patch(Circle((cx, cy), float(diam) / 2, fill=False, ec="tab:red", ls=":", lw=1,
                                label=f"probe diameter {float(diam):.1f} px"))
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x (object pixels)", labelpad=1)
    ax.set_ylabel("y (object pixels)")
    ax.set_title("scan positions (patch centres) by split")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)

    pext = (-N / 2 - 0.5, N / 2 - 0.5, N / 2 - 0.5, -N / 2 - 0.5)
    show(axes[1, 0], np.abs(probe), f"probe amplitude ({N} x {N} px)", "viridis", "amplitude (a.u.)",
         extent=pext)
    pa = np.abs(probe)
    faint = pa < 0.02 * pa.max()
    pcmap = plt.get_cmap("twilight_shifted").with_extremes(bad="0.75")
    show(axes[1, 1], np.ma.masked_where(faint, np.angle(probe)),
         "probe phase (grey: |P| < 2% of its peak)", pcmap, "phase (rad)", extent=pext)
    for ax in axes[1, :2]:
        ax.set_xlabel("x (pixels from probe centre)")
        ax.set_ylabel("y (pixels from probe centre)")

    ax = axes[1, 2]
    counts = np.asarray(pattern, dtype=np.float64)
    vmax = max(float(counts.max()), 1.0)
    cmap = plt.get_cmap("inferno").with_extremes(bad="black")
    im = ax.imshow(np.ma.masked_less(counts, 1.0), cmap=cmap, norm=LogNorm(vmin=1.0, vmax=max(vmax, 1.1)),
                   extent=pext)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label("counts (photons); black: 0")
    ax.set_title(f"test diffraction pattern #0 (log scale)\n{counts.sum():.0f} photons, "
                 f"{100 * np.mean(counts == 0):.0f}% zero pixels")
    ax.set_xlabel("detector column (px from centre)")
    ax.set_ylabel("detector row (px from centre)")

    f_t = attrs.get("overlap_target")
    f_m = attrs.get("overlap_measured")
    head = f"Dataset {study} / {view}: " if study or view else "Dataset: "
    meas = f"measured f = {f_m:.3f} (test)" + (f", {f_meas_tr:.3f} (train)" if f_meas_tr is not None else "")
    fig.suptitle(f"{head}dose {dose_label(dose)} photons/exposure, overlap target f = {f_t:.2f}, "
                 f"{meas}")
    save(fig, png_path)


__all__ = ["plot_dataset_summary"]
