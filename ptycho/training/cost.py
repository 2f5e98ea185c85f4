"""Planned time of a network job (train or adapt, then reconstruct) on one CPU thread.

The workflow asks a cluster for a network job's runtime from the study (``workflow/rules``,
``network_runtime``), so a study that changes ``N``, the ensemble, the epochs or the scan gets
requests that follow it. The model is the one the pattern-size benchmark measures
(``benchmarks/bench_pattern_size.py``; docs/performance.md, "Pattern size" and "Ensembles"), one
thread on a 2-core AMD EPYC machine with nothing else running:

- a training epoch costs ``PATTERN_MS`` per training pattern and network at N = 32 (pinn_g1
  2.6-2.7 ms, the baseline 3.0, pinn_g2 3.0-3.4), growing with the pattern's pixels above
  N = 45 (N = 64: 4.7-6.6 ms, N = 128: 20-29 ms for pinn_g1 and the baseline) -- the networks
  that the schema's rule gives at each N;
- a gridsize-2 pattern costs ``GRIDSIZE2_FACTOR`` times a single one (four members per group,
  the overlap constraint);
- reconstructing (prediction, phase synchronisation, stitching) costs ``RECONSTRUCT_FACTOR``
  training epochs per test pattern: 0.8-0.9 for gridsize 1, 2.4-2.6 for gridsize 2 (measured at
  N = 32, 64 and 128);
- every network of an ensemble costs the same again (three networks: 3.0-3.4 times one);
- ``STARTUP_S``: TensorFlow's start and the first epoch's tracing.

The estimate is for an idle thread of that machine; the workflow multiplies it by a margin.
"""

from __future__ import annotations

from ptycho.errors import ConfigError

PATTERN_MS = 2.7
PATTERN_MS_PIXELS = 2048  # N^2 above which the per-pattern cost grows with the pixels (N ~ 45)
GRIDSIZE2_FACTOR = 1.3
RECONSTRUCT_FACTOR = {1: 0.9, 2: 2.6}
STARTUP_S = 30.0


def pattern_ms(N: int) -> float:
    """Milliseconds per training pattern, epoch and network on one thread at pattern size N."""
    if N < 1:
        raise ConfigError(f"pattern size N must be >= 1, got {N}")
    return PATTERN_MS * max(1.0, N * N / PATTERN_MS_PIXELS)


def network_job_seconds(N: int, gridsize: int, n_train: int, epochs: int, n_test: int,
                        ensemble: int = 1) -> float:
    """Planned seconds of one network job on one CPU thread: ``epochs`` passes over ``n_train``
    patterns (for the adapted arm: its adaptation epochs over the test patterns), then the
    reconstruction of ``n_test`` patterns, by each of ``ensemble`` networks."""
    if gridsize not in RECONSTRUCT_FACTOR:
        raise ConfigError(f"gridsize must be 1 or 2, got {gridsize}")
    for name, value in (("n_train", n_train), ("epochs", epochs), ("n_test", n_test)):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    if ensemble < 1:
        raise ConfigError(f"ensemble must be >= 1, got {ensemble}")
    per = pattern_ms(N) / 1000.0 * (GRIDSIZE2_FACTOR if gridsize == 2 else 1.0)
    work = n_train * epochs + RECONSTRUCT_FACTOR[gridsize] * n_test
    return STARTUP_S + per * work * ensemble


__all__ = ["network_job_seconds", "pattern_ms"]
