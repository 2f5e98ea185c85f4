"""Network ablation: which backbone and recipe make the network arms learn, at the scaled budget.

    python experiments/ablation_networks.py --results results/dose_overlap/scaled \
        --cells 1e5_dense_r0 1e3_dense_r0 --arms pinn_g1 --variants cnn-8-3 resunet-16-2-s0.5 \
        --epochs 10 20 --out results/experiments/ablation.jsonl [--jobs 2]

Every run trains one arm of one cell of a finished study's datasets (``data/<cell>/train.h5``) with
``ptycho.training.fit.train_arm``, reconstructs the cell's test split with
``ptycho.reconstruct.inference.reconstruct_network`` (the study's stitching and phase
synchronisation) and scores it with ``ptycho.evaluation.evaluate_reconstruction`` -- the study's own
code path, in a fresh subprocess with one thread (as a scaled job runs). Each finished run appends
one JSON line to ``--out`` (so a long ablation can be resumed: runs already there are skipped) and
the table of all runs is printed at the end.

A variant is ``<backbone>-<filters>-<depth>[-s<support>][-lr<rate>][-slr<rate>][-cos][-rph|-aph][-gal][-clip<norm>][-seed<k>][-b<batch>][-a<epochs>]
[-alr<rate>][-ab<patterns>][-afz]``, e.g. ``resunet-16-2-s0.5-lr0.002-cos``; ``-a``/``-alr``/``-ab``/``-afz`` set the adaptation epochs,
learning rate, patterns per step and a frozen encoder of the ``adapted_g<g>`` arms (which train ``pinn_g<g>`` first, then fine-tune it
on the test split's counts; their fit time is the sum); ``-rph`` / ``-aph`` set the baseline's phase loss
(``supervised_phase``: offset_free / absolute), ``-gal`` aligns a group's member phases
(``align_group_phases``), ``-clip<norm>`` bounds the global gradient norm of each step (``clip_norm``),
``-seed<k>`` trains with the training seed k instead of the study's (initialisation, validation
split and shuffling: the run-to-run spread); everything else comes from the study's scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    from pathlib import Path
    a = json.loads(sys.argv[1])
    from ptycho.runner import limit_threads
    limit_threads(1)
    from ptycho.config import StudyConfig
    study = StudyConfig.from_yaml(a["study"])
    scale = study.scale(a["scale"])
    seed = a["training"].pop("seed", None)
    tc = dataclasses.replace(scale.training, **a["training"])
    if seed is not None:  # another training seed: initialisation, validation split, shuffling
        study = dataclasses.replace(study, seeds=dataclasses.replace(study.seeds, training=seed))
    study = dataclasses.replace(study, scales={**study.scales,
                                               a["scale"]: dataclasses.replace(scale, training=tc)})
    from ptycho.training.fit import train_arm
    from ptycho.reconstruct.inference import reconstruct_network
    from ptycho.reconstruct.io import write_reconstruction
    from ptycho.evaluation import evaluate_reconstruction
    d, cell = Path(a["dir"]), Path(a["cell_dir"])
    t0 = time.perf_counter()
    adapted = a["arm"].startswith("adapted_g")
    arm = "pinn_g" + a["arm"][len("adapted_g"):] if adapted else a["arm"]
    b = train_arm(arm, cell / "train.h5", study, a["scale"], d / "model.keras",
                  d / "bundle.json", d / "history.csv", d / "loss.png", threads=1)
    extra = 0.0
    if adapted:
        from ptycho.training.adapt import adapt_arm
        cfg = dataclasses.replace(scale.adaptation, **a["adaptation"])
        ab = adapt_arm(d / "model.keras", d / "bundle.json", cell / "test.h5", cfg,
                       cfg.patterns_per_step(tc.batch_size),
                       study.seeds.training, d / "adapted.keras", d / "adapted.json",
                       d / "adapted.csv", d / "adapted.png", threads=1)
        b["fit_time_s"] += ab["fit_time_s"]
        extra = ab["fit_time_s"]
        d_model, d_bundle = d / "adapted.keras", d / "adapted.json"
    else:
        d_model, d_bundle = d / "model.keras", d / "bundle.json"
    rec = reconstruct_network(d_model, d_bundle, cell / "test.h5",
                              scale.inference_batch_size, threads=1,
                              phase_sync=study.stitching.phase_sync,
                              refine_iterations=study.stitching.refine_iterations,
                              sync_method=study.stitching.sync_method, tmp_dir=d)
    rec.wall_time_s += extra
    write_reconstruction(d / "recon.h5", rec)
    m = evaluate_reconstruction(d / "recon.h5", cell / "test.h5", d / "metrics.json", d / "al.h5")
    M = m["metrics"]
    print(json.dumps({"amp_ssim": M["amplitude"]["ssim"], "phase_ssim": M["phase"]["ssim"],
                      "amp_frc17": M["amplitude"]["frc17_px"],
                      "phase_frc17": M["phase"]["frc17_px"],
                      "flat_amp_ssim": m["reference"]["flat_object"]["amplitude"]["ssim"],
                      "flat_phase_ssim": m["reference"]["flat_object"]["phase"]["ssim"],
                      "epochs_run": b["epochs_run"], "best_epoch": b["best_epoch"],
                      "fit_s": b["fit_time_s"], "train_job_s": b["wall_time_s"],
                      "recon_s": rec.wall_time_s, "total_s": time.perf_counter() - t0,
                      "parameters": b["backbone"]["parameters"],
                      "initial_loss": b["initial_loss"], "final_loss": b["final_loss"]}))
    """
)


def parse_variant(v: str) -> dict:
    parts = v.split("-")
    if len(parts) < 3:
        raise SystemExit(f"variant {v!r}: expected <backbone>-<filters>-<depth>[-options]")
    out = {"backbone": parts[0], "filters": int(parts[1]), "depth": int(parts[2])}
    for p in parts[3:]:
        if p.startswith("seed"):
            out["seed"] = int(p[4:])
        elif p.startswith("clip"):
            out["clip_norm"] = float(p[4:])
        elif p.startswith("slr"):
            out["supervised_learning_rate"] = float(p[3:])
        elif p.startswith("s"):
            out["support"] = float(p[1:])
        elif p.startswith("lr"):
            out["learning_rate"] = float(p[2:])
        elif p == "gal":
            out["align_group_phases"] = True
        elif p in ("rph", "aph"):
            out["supervised_phase"] = "offset_free" if p == "rph" else "absolute"
        elif p == "cos":
            out["schedule"] = "cosine"
        elif p.startswith("b"):
            out["batch_size"] = int(p[1:])
        elif p == "afz":
            out.setdefault("adaptation", {})["freeze_encoder"] = True
        elif p.startswith("ab"):
            out.setdefault("adaptation", {})["batch_size"] = int(p[2:])
        elif p.startswith("alr"):
            out.setdefault("adaptation", {})["learning_rate"] = float(p[3:])
        elif p.startswith("a"):
            out.setdefault("adaptation", {})["epochs"] = int(p[1:])
        else:
            raise SystemExit(f"variant {v!r}: unknown option {p!r}")
    return out


def run_one(job: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        arg = dict(job, dir=tmp)
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arg)], capture_output=True,
                           check=False, text=True, cwd=REPO)
        if job.get("keep") and r.returncode == 0:
            keep = Path(job["keep"]) / job["cell"] / job["arm"] / f"{job['variant']}-{job['epochs']}"
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
    if r.returncode != 0:
        return dict(job, error=r.stderr[-2000:])
    return dict(job, **json.loads(r.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/dose_overlap/scaled")
    ap.add_argument("--study", default="studies/dose_overlap/study.yaml")
    ap.add_argument("--scale", default="scaled")
    ap.add_argument("--cells", nargs="+", default=["1e5_dense_r0", "1e3_dense_r0"])
    ap.add_argument("--arms", nargs="+", default=["pinn_g1"])
    ap.add_argument("--variants", nargs="+", default=["cnn-8-3"])
    ap.add_argument("--epochs", nargs="+", type=int, default=[10])
    ap.add_argument("--patience", type=int, default=100, help="early-stopping patience (epochs)")
    ap.add_argument("--out", default="results/experiments/ablation.jsonl")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    ap.add_argument("--keep", default=None, help="copy each run's model, reconstruction and "
                    "metrics to KEEP/<cell>/<arm>/<variant>-<epochs>")
    a = ap.parse_args()

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["cell"], r["arm"], r["variant"], r["epochs"]))
    jobs = []
    for cell in a.cells:
        for arm in a.arms:
            for v in a.variants:
                for ep in a.epochs:
                    if (cell, arm, v, ep) in done:
                        continue
                    training = dict(parse_variant(v), epochs=ep, patience=a.patience)
                    adaptation = training.pop("adaptation", {})
                    jobs.append({"cell": cell, "arm": arm, "variant": v, "epochs": ep,
                                 "training": training, "adaptation": adaptation,
                                 "study": str(Path(a.study).resolve()),
                                 "scale": a.scale, "keep": a.keep,
                                 "cell_dir": str((Path(a.results) / "data" / cell).resolve())})
    print(f"{len(jobs)} runs ({len(done)} already in {out})", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for r in pool.map(run_one, jobs):
            with open(out, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            if "error" in r:
                print(f"{r['cell']} {r['arm']} {r['variant']} {r['epochs']}: FAILED\n{r['error']}",
                      flush=True)
            else:
                print(f"{r['cell']:<11} {r['arm']:<8} {r['variant']:<28} ep {r['epochs']:>3} "
                      f"({r['epochs_run']:>3} run) amp {r['amp_ssim']:.3f} phase "
                      f"{r['phase_ssim']:.3f}  fit {r['fit_s']:6.1f} s  job {r['total_s']:6.1f} s"
                      f"  params {r['parameters']}", flush=True)
    print_table(out)


def print_table(path: Path) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows = [r for r in rows if "error" not in r]
    print("\n| cell | arm | variant | epochs | params | amp SSIM | phase SSIM | fit (s) | "
          "train+recon job (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["cell"], r["arm"], r["variant"], r["epochs"])):
        print(f"| {r['cell']} | {r['arm']} | {r['variant']} | {r['epochs']} | {r['parameters']} | "
              f"{r['amp_ssim']:.3f} | {r['phase_ssim']:.3f} | {r['fit_s']:.0f} | "
              f"{r['total_s']:.0f} |")


if __name__ == "__main__":
    main()
