"""Phases E/F benchmark: training and inference throughput, and peak memory versus pattern count.

    python benchmarks/bench_training.py                     # throughput (scaled, N = 128) + memory at 2,000
    python benchmarks/bench_training.py --scales --sizes 2000 20000   # memory only, 2,000 vs 20,000
    python benchmarks/bench_training.py --scales scaled --sizes --threads 2 --arms pinn_g1

Every measurement is a fresh subprocess (TensorFlow is imported there, not here), so its peak RSS
(ru_maxrss) is its own. Datasets hold random Poisson counts written chunk by chunk with
``DatasetWriter`` (quick to make; the networks do not need to learn anything to be timed).

Throughput (patterns of the file per second; for pinn_g2 each pattern seeds a group of 4):
  training   patterns / s of the last of 2 epochs (validation included), from the bundle's epoch
             times, so TensorFlow start-up and graph tracing (first epoch) are excluded;
  inference  patterns / s of ``reconstruct_network`` (prediction + stitching, model loading
             excluded), batch size from the scale.
Memory: peak RSS of a training job (1 epoch) and of an inference job, each on a 2,000- and a
20,000-pattern file: streaming keeps it flat in the number of patterns.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

STUDY = Path(__file__).resolve().parents[1] / "studies" / "dose_overlap" / "study.yaml"

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    a = json.loads(sys.argv[1])
    from ptycho.runner import limit_threads
    limit_threads(a["threads"])
    import numpy as np, yaml
    from ptycho.config import StudyConfig
    from ptycho.data.dataset import DatasetMeta, DatasetWriter

    def make(path, n, N, split, chunk=512):
        rng = np.random.default_rng(0)
        side, step = int(np.ceil(n ** 0.5)), N / 4  # a jittered raster: 8 neighbours within N/2
        iy, ix = np.divmod(np.arange(n), side)
        pos = N / 2 + 2 + step * np.stack([iy, ix], 1) + rng.uniform(-0.3, 0.3, (n, 2))
        H = W = int(N + 4 + step * side)
        yy, xx = np.mgrid[0:N, 0:N] - N / 2
        probe = np.exp(-(yy**2 + xx**2) / (2 * (N / 8) ** 2)).astype(np.complex64)
        meta = DatasetMeta(1e4, 0.7, 0.7, 0.6, N / 3, split, 0, {"overlap_view": "bench"})
        lam = 1e4 / (N * N)
        with DatasetWriter(path, n, pos, probe, np.ones((H, W), np.complex64), meta, chunk) as w:
            for s in range(0, n, chunk):
                w.write(rng.poisson(lam, (min(chunk, n - s), N, N)).astype(np.float32))

    raw = yaml.safe_load(Path(a["study"]).read_text())
    tr = raw["scales"][a["scale"]].setdefault("training", {})
    tr["epochs"] = a["epochs"]
    tr["patience"] = tr["plateau_patience"] = 100
    study = StudyConfig.from_dict(raw)
    scale = study.scale(a["scale"])
    N = scale.N
    d = Path(a["dir"])
    out = {"arm": a["arm"], "scale": a["scale"], "N": N, "n": a["n"], "mode": a["mode"]}
    if a["mode"] == "train":
        make(d / "train.h5", a["n"], N, "train")
        from ptycho.training.fit import train_arm
        b = train_arm(a["arm"], d / "train.h5", study, a["scale"], d / "model.keras",
                      d / "bundle.json", d / "history.csv", d / "loss.png", threads=a["threads"])
        out["patterns_per_s"] = (b["n_train"] + b["n_val"]) / b["epoch_times_s"][-1]
        out["seconds"] = b["wall_time_s"]
    else:
        make(d / "test.h5", a["n"], N, "test")
        from ptycho.reconstruct.inference import reconstruct_network
        rec = reconstruct_network(d / "model.keras", d / "bundle.json", d / "test.h5",
                                  scale.inference_batch_size, threads=a["threads"])
        out["patterns_per_s"] = a["n"] / rec.info["predict_stitch_s"]
        out["seconds"] = rec.wall_time_s
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    """
)


def run(**kw) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw)], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"benchmark run failed: {kw}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(r: dict) -> str:
    return (f"{r['mode']:>9} {r['arm']:>8} {r['scale']:>6} {r['N']:>4} {r['n']:>7} "
            f"{r['patterns_per_s']:>11.1f} {r['seconds']:>8.1f} {r['peak_rss_mb']:>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--study", default=str(STUDY))
    ap.add_argument("--arms", nargs="+", default=["pinn_g1", "pinn_g2", "baseline"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--throughput-n", type=int, nargs=2, default=[400, 32], metavar=("SCALED", "FULL"),
                    help="patterns of the throughput files at the scaled and full (N = 128) scale")
    ap.add_argument("--sizes", type=int, nargs="*", default=[2000],
                    help="pattern counts of the memory runs (e.g. 2000 20000)")
    ap.add_argument("--memory-arm", default="pinn_g1")
    ap.add_argument("--scales", nargs="*", default=["scaled", "full"], choices=["scaled", "full"],
                    help="scales of the throughput runs (full: N = 128, slow on CPU)")
    a = ap.parse_args()
    print(f"{'job':>9} {'arm':>8} {'scale':>6} {'N':>4} {'patterns':>7} {'patterns/s':>11} "
          f"{'wall s':>8} {'peak MB':>10}")
    scales = [(s, n) for s, n in zip(("scaled", "full"), a.throughput_n) if s in a.scales]
    with tempfile.TemporaryDirectory() as tmp:
        for scale, n in scales:
            for arm in a.arms:
                d = Path(tmp) / f"{scale}_{arm}"
                d.mkdir()
                common = {"study": a.study, "scale": scale, "arm": arm, "threads": a.threads,
                          "dir": str(d)}
                print(row(run(mode="train", n=n, epochs=2, **common)), flush=True)
                print(row(run(mode="inference", n=n, epochs=2, **common)), flush=True)
        for n in a.sizes:
            d = Path(tmp) / f"mem_{n}"
            d.mkdir()
            common = {"study": a.study, "scale": "scaled", "arm": a.memory_arm,
                      "threads": a.threads, "dir": str(d), "n": n, "epochs": 1}
            print(row(run(mode="train", **common)), flush=True)
            print(row(run(mode="inference", **common)), flush=True)


if __name__ == "__main__":
    main()
