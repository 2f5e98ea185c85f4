"""Does more varied training data help the network arms, at the same pattern budget?

    python experiments/training_objects.py --results results/dose_overlap/scaled --cell 1e5_dense_r0 \
        --arm pinn_g1 --pairs camera:moon chelsea:coffee rocket:brick [--threads 1]

A cell's networks learn from the train split: ~1,200 patterns of the upper rows of one image. This
benchmark builds a second train split with exactly as many patterns drawn from several objects:
the cell's own train region plus one object per ``amplitude:phase`` pair of scikit-image images
(the study's amplitude and phase ranges), each scanned with the train split's own positions, set
side by side in one mosaic object (a gap of N pixels between tiles, so no patch spans two), and a
seeded subsample of all those positions of the original size. Counts are simulated the same way
(``ptycho.physics``: same probe, dose and Poisson noise). The arm is trained on each split with the
study's recipe and reconstructs the cell's unchanged test split; both are scored by the study's
evaluation. Prints and writes (``--out``) amplitude / phase SSIM and training time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    a = json.loads(sys.argv[1])
    from ptycho.runner import limit_threads
    limit_threads(a["threads"])
    from ptycho.config import StudyConfig
    from ptycho.training.fit import train_arm
    from ptycho.reconstruct.inference import reconstruct_with_study
    from ptycho.evaluation import evaluate_reconstruction
    study = StudyConfig.from_yaml(a["study"])
    d = Path(a["dir"])
    b = train_arm(a["arm"], a["train"], study, a["scale"], d / "model.keras", d / "bundle.json",
                  d / "history.csv", d / "loss.png", threads=a["threads"])
    reconstruct_with_study(d / "model.keras", d / "bundle.json", a["test"], study, a["scale"],
                           a["view"], d / "recon.h5", threads=a["threads"], tmp_dir=d)
    m = evaluate_reconstruction(d / "recon.h5", a["test"], d / "m.json", d / "al.h5")
    print(json.dumps({"amp_ssim": m["metrics"]["amplitude"]["ssim"],
                      "phase_ssim": m["metrics"]["phase"]["ssim"], "fit_s": b["fit_time_s"],
                      "n_train": b["n_train"] + b["n_val"]}))
    """
)


def mosaic_split(train_path: Path, out_path: Path, pairs, amplitude_range, phase_range,
                 seed: int) -> dict:
    """Write a train split of as many patterns as ``train_path`` drawn from its own region and one
    object per (amplitude, phase) image pair; returns a summary."""
    from ptycho.data.dataset import Dataset, DatasetWriter
    from ptycho.physics.forward import patch_corners, simulate_expected
    from ptycho.physics.noise import poisson_counts
    from ptycho.physics.object import skimage_object
    from ptycho.rng import rng_for

    with Dataset(train_path) as ds:
        obj, probe, pos, dose = ds.object, ds.probe, ds.positions, ds.dose
        meta = ds.meta(split="train", seed=seed)
        N, n = ds.N, ds.n
    lo = np.maximum(patch_corners(pos, N).min(axis=0) - 2, 0)
    hi = np.minimum(patch_corners(pos, N).max(axis=0) + N + 2, obj.shape)
    tile = obj[lo[0] : hi[0], lo[1] : hi[1]]
    rel = pos - lo
    tiles = [tile] + [skimage_object(tile.shape, a, p, amplitude_range, phase_range)
                      for a, p in pairs]
    H, w = tile.shape
    W = len(tiles) * w + (len(tiles) - 1) * N
    mosaic = np.ones((H, W), np.complex64)
    all_pos = []
    for k, t in enumerate(tiles):
        x0 = k * (w + N)
        mosaic[:, x0 : x0 + w] = t
        all_pos.append(rel + [0, x0])
    all_pos = np.concatenate(all_pos)
    rng = rng_for(seed, "training-objects")
    chosen = np.sort(rng.choice(len(all_pos), size=n, replace=False))
    positions = all_pos[chosen]
    noise = rng_for(seed, "training-objects-noise")
    with DatasetWriter(out_path, n, positions, probe, mosaic, meta) as wr:
        for s in range(0, n, 256):
            wr.write(poisson_counts(simulate_expected(mosaic, probe, positions[s : s + 256], dose),
                                    noise))
    per_tile = np.bincount(chosen // len(pos), minlength=len(tiles))
    return {"tiles": ["study object (train region)"] + [f"{a}:{p}" for a, p in pairs],
            "patterns_per_tile": per_tile.tolist(), "n": int(n), "mosaic_shape": [H, W]}


def run(arm, train, test, study, scale, view, threads) -> dict:
    with tempfile.TemporaryDirectory(prefix="training-objects-") as tmp:
        arg = {"arm": arm, "train": str(train), "test": str(test), "study": study,
               "scale": scale, "view": view, "threads": threads, "dir": tmp}
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arg)], capture_output=True,
                           check=False, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/dose_overlap/scaled")
    ap.add_argument("--study", default=str(REPO / "studies" / "dose_overlap" / "study.yaml"))
    ap.add_argument("--scale", default="scaled")
    ap.add_argument("--cell", default="1e5_dense_r0")
    ap.add_argument("--arm", default="pinn_g1")
    ap.add_argument("--pairs", nargs="+", default=["camera:moon", "chelsea:coffee", "rocket:brick"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "results" / "experiments" / "training_objects.json"))
    a = ap.parse_args()

    from ptycho.config import StudyConfig

    study = StudyConfig.from_yaml(a.study)
    cell = Path(a.results) / "data" / a.cell
    view = a.cell.split("_", 1)[1]
    pairs = [tuple(p.split(":")) for p in a.pairs]
    out = {"cell": a.cell, "arm": a.arm, "pairs": a.pairs}
    with tempfile.TemporaryDirectory(prefix="mosaic-") as tmp:
        mosaic = Path(tmp) / "train.h5"
        out["mosaic"] = mosaic_split(cell / "train.h5", mosaic, pairs,
                                     study.object.amplitude_range, study.object.phase_range,
                                     a.seed)
        out["own_object"] = run(a.arm, cell / "train.h5", cell / "test.h5", a.study, a.scale,
                                view, a.threads)
        out["several_objects"] = run(a.arm, mosaic, cell / "test.h5", a.study, a.scale, view,
                                     a.threads)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{a.arm} on {a.cell}, {out['mosaic']['n']} training patterns "
          f"(several objects: {out['mosaic']['patterns_per_tile']} per tile)")
    for k in ("own_object", "several_objects"):
        r = out[k]
        print(f"  {k:<16} amp SSIM {r['amp_ssim']:.3f}  phase SSIM {r['phase_ssim']:.3f}  "
              f"fit {r['fit_s']:.0f} s")


if __name__ == "__main__":
    main()
