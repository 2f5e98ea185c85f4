"""Progress lines of long jobs: who is running (arm, cell, replicate), step k of K and how long the
rest will take. No framework imports (used by training and by the pty-chi solver)."""

from __future__ import annotations

import math


def job_label(arm: str, dose_label: str, overlap: str, replicate: int,
              level: str | None = None) -> str:
    """``pinn_g1 1e5_dense_r0`` (``pinn_g1 1e5_dense_probe25_r0`` at a model-error level): the
    arm and the cell replicate as in result paths."""
    lv = f"_{level}" if level else ""
    return f"{arm} {dose_label}_{overlap}{lv}_r{int(replicate)}"


def format_duration(seconds: float) -> str:
    """``45 s``, ``1 min 20 s``, ``2 h 5 min``."""
    if not math.isfinite(seconds):
        return "unknown"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def eta(step_times: list[float], done: int, total: int, at_most: bool = False) -> str:
    """``ETA 1 min 20 s``: the mean time of a step times the steps left (``at most`` when the job
    may stop sooner, e.g. early stopping). The first step (TensorFlow traces the model in it) is
    left out of the mean once there are others."""
    left = max(0, int(total) - int(done))
    if left == 0:
        return "done"
    times = step_times[1:] if len(step_times) > 1 else step_times
    if not times:
        return "ETA unknown"
    mean = sum(times) / len(times)
    return f"ETA {'at most ' if at_most else ''}{format_duration(mean * left)}"


__all__ = ["eta", "format_duration", "job_label"]
