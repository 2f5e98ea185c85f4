"""Figure helpers shared by the reporting modules (matplotlib is imported on use, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from ptycho.arms.spec import ArmIdentity
from ptycho.data.io import atomic_path
from ptycho.reporting import arm_sort_key

DPI = 110
_BASE_COLOURS = {"pinn_g1": "tab:blue", "pinn_g2": "tab:orange", "pinn_g3": "tab:purple",
                 "baseline": "tab:green", "iterative": "tab:red", "hybrid": "tab:brown"}
_EXTRA = ("tab:pink", "tab:gray", "tab:olive", "tab:cyan")
# Marker and line style per arm, so that arms whose values coincide (the iterative arm and the
# hybrid arm started from a network often do) stay visible: the later arm is drawn thinner and
# dashed over the earlier one's wider solid line and larger marker.
_STYLES = {"pinn_g1": ("o", "-"), "pinn_g2": ("s", "-"), "pinn_g3": ("P", "-"),
           "adapted_g2": ("D", "-"), "baseline": ("v", "-"), "iterative": ("o", "-"),
           "hybrid": ("x", (0, (4, 2)))}


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def arm_colour(arm: str, arms=()) -> str:
    if arm in _BASE_COLOURS:
        return _BASE_COLOURS[arm]
    others = sorted((a for a in arms if a not in _BASE_COLOURS), key=arm_sort_key)
    i = others.index(arm) if arm in others else 0
    return _EXTRA[i % len(_EXTRA)]


def arm_style(arm: str) -> dict:
    """Line keyword arguments of an arm (colour aside): marker, line style, width and marker size;
    the iterative arm is wide and solid, the hybrid arm narrow and dashed on top of it."""
    ident = ArmIdentity.try_parse(arm)
    adapted = ident is not None and ident.kind == "adapted"
    marker, ls = _STYLES.get(arm, ("^" if adapted else "o", "-"))
    wide = arm == "iterative"
    return {"marker": marker, "linestyle": ls, "linewidth": 3.2 if wide else 1.6,
            "markersize": 8.5 if wide else 6.0, "zorder": 2 if wide else 3,
            "alpha": 0.75 if wide else 1.0}


def legend_columns(entries: int, width_in: float, entry_in: float = 1.5, most: int = 6) -> int:
    """Columns of a figure legend below the panels: as many entries per row as fit the figure's
    width (``entry_in`` inches each) and at most ``most``, so a narrow figure (one cell, one
    overlap view) wraps its legend into rows instead of running off the figure."""
    return max(1, min(entries, most, int(width_in // entry_in)))


def save(fig, png) -> None:
    """Save ``fig`` to ``png`` atomically and close it."""
    plt = pyplot()
    png = Path(png)
    try:
        with atomic_path(png, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)


def message_figure(png, title: str, message: str) -> None:
    """A small figure that states why there is nothing to plot (the output still exists)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.5), constrained_layout=True)
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    save(fig, png)
