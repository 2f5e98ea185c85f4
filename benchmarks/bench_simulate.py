"""Phase C benchmark: simulation throughput at N = 128 and peak memory versus pattern count.

    python benchmarks/bench_simulate.py            # 10,000 patterns timed; 2,000 vs 20,000 memory
    python benchmarks/bench_simulate.py --quick    # smaller counts

Each run is a fresh subprocess so its peak RSS (ru_maxrss) is its own. Patterns are simulated in
chunks and streamed to an HDF5 file, so the peak should not grow with the number of patterns.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from ptycho.data.dataset import DatasetMeta
    from ptycho.data.generate import write_split
    from ptycho.physics.object import skimage_object
    from ptycho.physics.probe import simulated_probe
    n, N, chunk, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    H = W = 1024
    obj = skimage_object((H, W))
    probe = simulated_probe(N)
    rng = np.random.default_rng(0)
    pos = rng.uniform(N / 2 + 1, H - N / 2 - 2, size=(n, 2))
    meta = DatasetMeta(1e4, 0.7, 0.7, 0.6, 40.0, "train", 0, {})
    t0 = time.perf_counter()
    write_split(path, obj, probe, pos, 1e4, meta, chunk, np.random.default_rng(1))
    dt = time.perf_counter() - t0
    print(json.dumps({"n": n, "N": N, "seconds": dt, "patterns_per_s": n / dt,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def run(n: int, N: int, chunk: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(N), str(chunk), f"{d}/x.h5"],
                             check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=512)
    a = ap.parse_args()
    counts = [1000, 2000, 5000] if a.quick else [10000, 2000, 20000]
    print(f"{'patterns':>9} {'N':>4} {'seconds':>8} {'patterns/s':>11} {'peak RSS MB':>12}")
    for n in counts:
        r = run(n, a.N, a.chunk)
        print(f"{r['n']:>9} {r['N']:>4} {r['seconds']:>8.1f} {r['patterns_per_s']:>11.0f} {r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
