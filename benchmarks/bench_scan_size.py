"""Scan-size benchmark: network inference + phase synchronisation + stitching from 2k to 100k patterns.

    python benchmarks/bench_scan_size.py --model results/dose_overlap/scaled/models/pinn_g1/1e5_dense_r0
        [--sizes 2000 20000 100000] [--threads 2] [--sync-method blocks] [--json out.json]

One large dense scan at the default study's scaled size: N, probe, scan pattern, jitter and the
dense overlap come from ``--study`` (scale ``scaled``); the object (the study's images, resized) is
made just large enough to hold each size. Counts are simulated at the model's dose with the
project's forward model and written with ``DatasetWriter`` (the same file format as the study),
then a fresh subprocess per size runs ``reconstruct_network`` on it with the trained model of
``--model`` (a bundle of the study: same N), so each size's peak resident memory (ru_maxrss) is
its own and TensorFlow start-up is counted in its wall time. Prints seconds (total, prediction
with the patch store's writes, synchronisation, stitching), patterns per second and peak memory
per size, and the exponent of a least-squares fit of log(seconds) against log(patterns).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

STUDY = Path(__file__).resolve().parents[1] / "studies" / "dose_overlap" / "study.yaml"

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    a = json.loads(sys.argv[1])
    from ptycho.runner import limit_threads
    limit_threads(a["threads"])
    from ptycho.reconstruct.inference import reconstruct_network
    t0 = time.perf_counter()
    rec = reconstruct_network(a["model"] + "/model.keras", a["model"] + "/bundle.json", a["test"],
                              a["batch"], threads=a["threads"], refine_iterations=a["refine"],
                              tmp_dir=a["tmp"], sync_method=a["method"])
    wall = time.perf_counter() - t0
    info = rec.info
    sync = info["synchronisation"]
    print(json.dumps({"seconds": wall, "predict_s": info["predict_s"], "sync_s": sync["time_s"],
                      "stitch_s": info["predict_stitch_s"] - info["predict_s"] - sync["time_s"],
                      "n_patches": info["n_patches_stitched"], "n_pieces": sync.get("n_pieces"),
                      "objective_gain": sync["objective"] / sync["objective_without"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def simulate_scan(study_path: Path, n: int, dose: float, path: Path, seed: int = 1) -> dict:
    """Write a dense test scan of exactly ``n`` patterns at the study's scaled size to ``path``."""
    import dataclasses

    from ptycho.config import StudyConfig
    from ptycho.data.dataset import DatasetMeta
    from ptycho.data.generate import build_object, build_probe, write_split
    from ptycho.physics.probe import energy_diameter
    from ptycho.physics.scan import ScanRegion, measured_overlap, scan_positions
    from ptycho.rng import rng_for

    study = StudyConfig.from_yaml(study_path)
    scale = study.scale("scaled")
    view = max(study.overlaps, key=study.overlaps.get)  # the dense view
    f = study.overlap(view)
    probe = build_probe(study, scale)
    d = energy_diameter(probe, 0.9)
    N = scale.N
    side = int(np.ceil(np.sqrt(n * 1.05) * (1 - f) * d)) + N + 8  # 5% spare: the step calibrates
    for _ in range(5):
        obj = build_object(study, dataclasses.replace(scale, object_size=(side, side)))
        pos = scan_positions(study.scan.pattern, f, d, ScanRegion.for_object(obj.shape, N),
                             study.scan.jitter, seed)
        if len(pos) >= n:
            break
        side = int(side * 1.05 * np.sqrt(n / len(pos))) + 1
    pos = pos[:n]
    meta = DatasetMeta(dose=dose, overlap_target=f, overlap_measured=measured_overlap(pos, d),
                       overlap_area=0.0, probe_diameter=d, split="test", seed=seed,
                       config={"overlap_view": view, "benchmark": "bench_scan_size"})
    write_split(path, obj, probe, pos, dose, meta, scale.chunk_size,
                rng_for(seed, "bench_scan_size", str(n)))
    return {"object_size": [side, side], "overlap_measured": meta.overlap_measured,
            "N": N, "probe_diameter_px": d}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="results/dose_overlap/scaled/models/pinn_g1/1e5_dense_r0",
                    help="a trained arm's directory (model.keras, bundle.json) at the scaled N")
    ap.add_argument("--study", default=str(STUDY))
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sync-method", default="blocks", choices=["blocks", "global"])
    ap.add_argument("--tmp", default=None, help="where the scans and patch files go")
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args()

    from ptycho.config import StudyConfig
    from ptycho.models.bundle import read_bundle

    model = Path(a.model)
    bundle = read_bundle(model / "bundle.json")
    study = StudyConfig.from_yaml(a.study)
    scale = study.scale("scaled")
    if int(bundle["N"]) != scale.N:
        raise SystemExit(f"{model}: model trained at N = {bundle['N']}, the study's scaled N is "
                         f"{scale.N}")
    rows = []
    print(f"{'patterns':>9} {'object':>11} {'total s':>8} {'predict s':>9} {'sync s':>7} "
          f"{'stitch s':>8} {'patt/s':>7} {'peak MB':>8} {'simulate s':>10}", flush=True)
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        for n in a.sizes:
            test = Path(tmp) / f"scan_{n}.h5"
            t = time.perf_counter()
            geo = simulate_scan(Path(a.study), n, float(bundle["dose"]), test)
            t_sim = time.perf_counter() - t
            args = {"model": str(model), "test": str(test), "batch": scale.inference_batch_size,
                    "threads": a.threads, "refine": study.stitching.refine_iterations,
                    "tmp": tmp, "method": a.sync_method}
            proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"inference on {n} patterns failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r.update(n=n, simulate_s=t_sim, arm=bundle["arm"], threads=a.threads,
                     sync_method=a.sync_method, **geo)
            rows.append(r)
            test.unlink()
            print(f"{n:>9} {'x'.join(map(str, geo['object_size'])):>11} {r['seconds']:>8.1f} "
                  f"{r['predict_s']:>9.1f} {r['sync_s']:>7.1f} {r['stitch_s']:>8.1f} "
                  f"{n / r['seconds']:>7.0f} {r['peak_rss_mb']:>8.0f} {t_sim:>10.1f}", flush=True)
    out = {"rows": rows}
    if len(rows) > 1:
        logn = np.log([r["n"] for r in rows])
        for key in ("seconds", "sync_s"):
            out[f"exponent_{key}"] = float(np.polyfit(logn, np.log([r[key] for r in rows]), 1)[0])
        peaks = [r["peak_rss_mb"] for r in rows]
        out["peak_rss_ratio"] = max(peaks) / min(peaks)
        print(f"fitted exponent of time against patterns: total {out['exponent_seconds']:.2f}, "
              f"synchronisation {out['exponent_sync_s']:.2f}; peak memory max/min "
              f"{out['peak_rss_ratio']:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
