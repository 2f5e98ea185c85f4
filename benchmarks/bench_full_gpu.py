"""The full scale on one GPU node: run the real workflow and gather its measurements in one JSON.

    python benchmarks/bench_full_gpu.py [--scope cell|study] [--cell 1e5_dense]  (dose_overlap) [--cores 16]
        [--gpus 1] [--json full_gpu.json] [--keep DIR]
        [--object-size H W] [--epochs E] [--iterations I]      # cut down (e.g. on a CPU machine)

``--scope study`` runs ``phase_g_full`` of the study (every cell and arm); ``--scope cell`` (the
default) runs one full-scale cell end to end with every arm (a derived study with that cell's dose
and overlap only), for when the whole study would not fit the time at hand. The derived study YAML
and the results go to a temporary directory (``--keep`` keeps them), and Snakemake runs there with
``--config study=... results=...`` up to the verification report (a failed check is recorded,
not fatal), ``--cores`` and ``--resources gpu=N`` as on a GPU node (one TensorFlow or torch job
per GPU). The cut-down options change the derived study's full scale only.

Written to ``--json``: the device (GPU name and memory, whether TensorFlow and torch see it),
the command and its wall time and exit status; per rule the jobs, total and largest wall time and
peak resident memory (Snakemake's benchmark TSVs, mapped to rules by the run's own job printout);
training throughput per arm and cell (patterns of the training file per second over the epochs
after the first, from the model bundles) and peak GPU memory; inference throughput (test patterns
per second of prediction, and with synchronisation and stitching) and peak GPU memory; pty-chi
seconds, device and peak GPU memory; every arm's amplitude and phase SSIM; the verification result.
Mixed precision and XLA are not switched on here: they are to be measured against these figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
STUDY = REPO / "studies" / "dose_overlap" / "study.yaml"


def derived_study(path: Path, scope: str, cell: str, object_size, epochs, iterations,
                  adaptation_epochs=None) -> dict:
    raw = yaml.safe_load(path.read_text())
    if scope == "cell":
        from ptycho.config import dose_label

        dose, view = cell.split("_", 1)
        doses = [d for d in raw["doses"] if dose_label(float(d)) == dose]
        if not doses or view not in raw["overlaps"]:
            raise SystemExit(f"{path}: no cell '{cell}' (doses {raw['doses']}, overlaps "
                             f"{list(raw['overlaps'])})")
        raw["doses"], raw["overlaps"] = doses, {view: raw["overlaps"][view]}
        raw["scales"]["full"]["replicates"] = 1  # one cell: one replicate of it
        raw.pop("equal_fluence", None)  # names cells of the whole grid
    full = raw["scales"]["full"]
    if adaptation_epochs is not None:
        full.setdefault("adaptation", {})["epochs"] = int(adaptation_epochs)
    if object_size:
        full["object_size"] = list(object_size)
    if epochs:
        full["training"]["epochs"] = int(epochs)
    if iterations:
        full["iterative"]["iterations"] = int(iterations)
    return raw


def device_info() -> dict:
    """GPU name/memory (nvidia-smi) and whether TensorFlow and torch see a GPU (each in its own
    process: the two frameworks are never imported together)."""
    out = {"nvidia_smi": None}
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True, check=False)
        out["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    probes = {"tensorflow_gpus": "import tensorflow as tf; "
                                 "print(len(tf.config.list_physical_devices('GPU')))",
              "torch_cuda": "import torch; print(int(torch.cuda.is_available()))"}
    for key, code in probes.items():
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=False)
        out[key] = int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    return out


def gather(root: Path, run_output: str, workdir: Path) -> dict:
    """Per-rule figures from the benchmark TSVs, throughput and GPU memory from bundles and
    reconstructions, SSIM from the evaluations, under the scale's results ``root``."""
    from ptycho.config import is_solver_arm
    from ptycho.reconstruct.io import read_reconstruction
    from ptycho.reporting.resources import measured_by_rule, planned_jobs

    rules = {rule: m for (rule, _), m in measured_by_rule(planned_jobs(run_output), workdir).items()}
    training = []
    for bundle_path in sorted(root.glob("models/*/*/bundle.json")):
        b = json.loads(bundle_path.read_text())
        times = b["epoch_times_s"][1:] or b["epoch_times_s"]  # the first epoch traces the graph
        training.append({"arm": b["arm"], "cell": bundle_path.parent.name,
                         "patterns_per_s": (b["n_train"] + b["n_val"]) * len(times) / sum(times),
                         "epochs": b["epochs_run"], "fit_s": b["fit_time_s"],
                         "peak_gpu_mb": b.get("peak_gpu_mb")})
    inference, iterative = [], []
    for recon_path in sorted(root.glob("recon/*/*.h5")):
        rec = read_reconstruction(recon_path)
        row = {"arm": rec.arm, "cell": recon_path.stem, "n_patterns": rec.n_patterns,
               "wall_s": rec.wall_time_s, "peak_gpu_mb": rec.info.get("peak_gpu_mb")}
        if is_solver_arm(rec.arm):  # iterative, hybrid (its wall time: + its start's inference)
            row.update(ptychi_s=rec.info.get("wall_time_s", rec.wall_time_s),
                       import_s=rec.info.get("import_s"), device=rec.info.get("device"),
                       iterations=rec.info.get("iterations"))
            iterative.append(row)
        else:
            sync = rec.info.get("synchronisation", {})
            row.update(predict_patterns_per_s=rec.n_patterns / rec.info["predict_s"],
                       patterns_per_s=rec.n_patterns / rec.info["predict_stitch_s"],
                       sync_s=sync.get("time_s"))
            inference.append(row)
    ssim = {}
    for m_path in sorted(root.glob("eval/*/*/metrics.json")):
        m = json.loads(m_path.read_text())["metrics"]
        ssim[f"{m_path.parent.parent.name} {m_path.parent.name}"] = {
            "amplitude": m["amplitude"]["ssim"], "phase": m["phase"]["ssim"]}
    report = root / "report" / "verification_report.json"
    verified = json.loads(report.read_text()) if report.is_file() else None
    gpu_peaks = [r["peak_gpu_mb"] for r in training + inference + iterative if r["peak_gpu_mb"]]
    return {"rules": rules, "training": training, "inference": inference, "iterative": iterative,
            "ssim": ssim, "peak_gpu_mb": max(gpu_peaks) if gpu_peaks else None,
            "peak_host_rss_mb": max((r["max_rss_mb"] for r in rules.values()), default=None),
            "verification": None if verified is None else
            {"passed": verified["passed"], "failed": verified.get("failed", [])}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(STUDY))
    ap.add_argument("--scope", choices=["cell", "study"], default="cell")
    ap.add_argument("--cell", default="1e5_dense", help="dose_overlap label of the cell")
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--object-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--iterations", type=int, default=None, help="pty-chi LSQML epochs")
    ap.add_argument("--adaptation-epochs", type=int, default=None,
                    help="epochs of the adapted arm's fine-tuning")
    ap.add_argument("--json", default="full_gpu.json")
    ap.add_argument("--keep", default=None, help="run in this directory and keep it")
    a = ap.parse_args()

    raw = derived_study(Path(a.study), a.scope, a.cell, a.object_size, a.epochs, a.iterations,
                        a.adaptation_epochs)
    out = {"scope": a.scope, "cell": a.cell if a.scope == "cell" else None,
           "device": device_info(), "cut_down": {"object_size": a.object_size,
                                                 "epochs": a.epochs, "iterations": a.iterations}}
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(a.keep).resolve() if a.keep else Path(tmp)
        (wd / "config").mkdir(parents=True, exist_ok=True)
        study_path = wd / "study.yaml"
        study_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        results = wd / "results"
        (wd / "config" / "config.yaml").write_text(
            yaml.safe_dump({"study": str(study_path), "results": str(results)}))
        root = results / raw["study"] / "full"
        target = str(root / "report" / "verification_report.json")
        cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(wd),
               "--cores", str(a.cores), "--resources", f"gpu={a.gpus}", "--keep-going",
               "--config", f"study={study_path}", f"results={results}", "--", target]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        out.update(command=" ".join(cmd[1:]), wall_s=time.perf_counter() - t0,
                   returncode=proc.returncode, study=raw)
        (wd / "snakemake.log").write_text(proc.stdout + proc.stderr)
        out.update(gather(root, proc.stdout + proc.stderr, wd))
        if proc.returncode:
            out["snakemake_tail"] = (proc.stdout + proc.stderr)[-3000:]
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{a.json}: {out['wall_s']:.0f} s wall, exit {out['returncode']}; "
          f"verification {out['verification']}; peak GPU {out['peak_gpu_mb']} MB, peak host "
          f"{out['peak_host_rss_mb']} MB")
    for rule, r in sorted(out["rules"].items()):
        print(f"  {rule:>22}: {r['jobs']} jobs, {r['total_s']:.0f} s total, {r['max_s']:.0f} s "
              f"longest, {r['max_rss_mb']:.0f} MB peak")
    for r in out["training"]:
        print(f"  train {r['arm']:>8} {r['cell']}: {r['patterns_per_s']:.1f} patterns/s")
    for r in out["inference"]:
        print(f"  infer {r['arm']:>8} {r['cell']}: {r['predict_patterns_per_s']:.1f} patterns/s "
              f"predicting, {r['patterns_per_s']:.1f} with synchronisation and stitching")
    for r in out["iterative"]:
        print(f"  pty-chi {r['cell']}: {r['ptychi_s']:.1f} s on {r['device']}")
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
