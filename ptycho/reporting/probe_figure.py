"""Figure of a refined probe beside the probe it started from (``data: probe_source:
train_refined``): amplitude and phase of the given and the refined first mode, and the difference
of the amplitudes."""

from __future__ import annotations

import numpy as np

from ptycho.data.probe_file import read_probe_file
from ptycho.reporting._figures import pyplot, save


def plot_probe_refinement(probe_path, png_path, title: str = "") -> None:
    """Given and refined probe (first mode) of a refined-probe file: amplitude, phase (rad; grey
    where |P| < 2% of its peak) and |refined| - |given|; the title gives the change, the relative
    probe errors (simulated data with a probe error) and the hashes' first characters."""
    plt = pyplot()
    rp = read_probe_file(probe_path)
    given, refined = rp.given_probe[0], rp.probe[0]
    N = given.shape[-1]
    ext = (-N / 2 - 0.5, N / 2 - 0.5, N / 2 - 0.5, -N / 2 - 0.5)
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.2), constrained_layout=True)
    pcmap = plt.get_cmap("twilight_shifted").with_extremes(bad="0.75")
    vmax = float(max(np.abs(given).max(), np.abs(refined).max()))
    for row, (name, p, sha) in enumerate((("given", given, rp.given_sha256),
                                          ("refined (train split)", refined, rp.sha256))):
        a = np.abs(p)
        im = axes[row, 0].imshow(a, cmap="viridis", vmin=0, vmax=vmax, extent=ext)
        axes[row, 0].set_title(f"{name} probe amplitude\nSHA-256 {sha[:12]}...")
        fig.colorbar(im, ax=axes[row, 0], shrink=0.85).set_label("amplitude (a.u.)")
        im = axes[row, 1].imshow(np.ma.masked_where(a < 0.02 * a.max(), np.angle(p)), cmap=pcmap,
                                 vmin=-np.pi, vmax=np.pi, extent=ext)
        axes[row, 1].set_title(f"{name} probe phase (grey: |P| < 2% of peak)")
        fig.colorbar(im, ax=axes[row, 1], shrink=0.85).set_label("phase (rad)")
    d = np.abs(refined) - np.abs(given)
    lim = float(np.abs(d).max()) or 1.0
    im = axes[0, 2].imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
    axes[0, 2].set_title("|refined| - |given|")
    fig.colorbar(im, ax=axes[0, 2], shrink=0.85).set_label("amplitude difference")
    ax = axes[1, 2]
    costs = rp.info.get("cost_history") or []
    if costs:
        ax.semilogy(np.arange(1, len(costs) + 1), costs, "k-")
        ax.set_xlabel("LSQML epoch (train split)")
        ax.set_ylabel("pty-chi cost")
        ax.set_title("refinement cost")
    else:
        ax.axis("off")
    for a in axes[:, :2].ravel().tolist() + [axes[0, 2]]:
        a.set_xlabel("x (pixels from probe centre)")
        a.set_ylabel("y (pixels from probe centre)")
    info = rp.info
    parts = [f"change from the given probe {info['probe_change']:.3f}"
             if info.get("probe_change") is not None else ""]
    if info.get("refined_probe_error") is not None:
        parts.append(f"relative probe error {info['given_probe_error']:.3f} (given) -> "
                     f"{info['refined_probe_error']:.3f} (refined)")
    s = rp.settings
    parts.append(f"{s.get('iterations')} LSQML epochs, batch {s.get('batch_size')}, "
                 f"{len(rp.probe)} mode(s)")
    head = f"{title}: " if title else ""
    fig.suptitle(head + "probe refined on the train split\n" + "; ".join(p for p in parts if p))
    save(fig, png_path)


__all__ = ["plot_probe_refinement"]
