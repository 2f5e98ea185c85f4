"""Same result on the study: the block synchronisation against the global solve, every arm and cell.

    python experiments/sync_agreement.py --results results/dose_overlap/scaled [--out DIR]
        [--arms pinn_g1 pinn_g2 baseline] [--cells 1e5_dense_r0 ...] [--threads 1] [--tolerance 0.005]

For every trained network arm and cell of a finished study (``models/<arm>/<cell>/`` and
``data/<cell>/test.h5`` under ``--results``), the test split is reconstructed three times with
``reconstruct_network``: ``sync_method="global"`` (one Lanczos solve of the whole scan, the solver
before 2026-11, tolerance 1e-4), ``"blocks"`` (the default) and the global solve with a converged
Lanczos eigenvector (tolerance 1e-9), the rest of the study's stitching settings unchanged; each
is scored with ``evaluate_reconstruction`` (the study's alignment and metrics). Prints amplitude
and phase SSIM, the block solver's phase-SSIM difference to both global solves and the
synchronisation seconds (TensorFlow start-up excluded: one process), writes the rows to
``<out>/sync_agreement.json`` and exits 1 when a phase-SSIM difference to the global solve as
before exceeds ``--tolerance``. Nothing is written under ``--results``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# (name, sync_method, sync_options): the global solve as before 2026-11 (Lanczos tolerance 1e-4),
# the block solver, and the global solve with a converged Lanczos eigenvector (the reference the
# block solver approximates)
METHODS = (("global", "global", {}), ("blocks", "blocks", {}),
           ("global_converged", "global", {"lanczos_tol": 1e-9}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/dose_overlap/scaled")
    ap.add_argument("--study", default="studies/dose_overlap/study.yaml")
    ap.add_argument("--scale", default="scaled")
    ap.add_argument("--arms", nargs="+", default=None, help="default: every trained arm found")
    ap.add_argument("--cells", nargs="+", default=None, help="default: every cell of the study")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=0.005, help="largest phase-SSIM difference")
    ap.add_argument("--out", default=None, help="where the JSON and scratch files go (default: "
                                                "a temporary directory, JSON printed only)")
    a = ap.parse_args()

    from ptycho.runner import limit_threads

    limit_threads(a.threads)
    from ptycho.config import StudyConfig
    from ptycho.evaluation import evaluate_reconstruction
    from ptycho.reconstruct.inference import reconstruct_network
    from ptycho.reconstruct.io import write_reconstruction

    study = StudyConfig.from_yaml(a.study)
    scale = study.scale(a.scale)
    results = Path(a.results)
    cells = a.cells or [f"{d}_{o}_r0" for d in study.dose_labels for o in study.overlaps]
    arms = a.arms or [p.name for p in sorted((results / "models").iterdir()) if p.is_dir()]
    rows = []
    print(f"{'arm':>8} {'cell':>11} {'amp SSIM g/b':>15} {'phase SSIM g/b':>15} {'d phase':>8} "
          f"{'conv.':>7} {'d conv':>8} {'sync s g/b':>13} {'patches':>7}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(a.out) if a.out else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        for arm in arms:
            for cell in cells:
                model = results / "models" / arm / cell
                test = results / "data" / cell / "test.h5"
                row = {"arm": arm, "cell": cell}
                for name, method, options in METHODS:
                    rec = reconstruct_network(model / "model.keras", model / "bundle.json", test,
                                              scale.inference_batch_size, threads=a.threads,
                                              phase_sync=True,
                                              refine_iterations=study.stitching.refine_iterations,
                                              tmp_dir=scratch, sync_method=method,
                                              sync_options=options)
                    out = scratch / f"{arm}_{cell}_{name}"
                    out.mkdir(exist_ok=True)
                    write_reconstruction(out / "recon.h5", rec)
                    m = evaluate_reconstruction(out / "recon.h5", test, out / "metrics.json",
                                                out / "aligned.h5")["metrics"]
                    sync = rec.info["synchronisation"]
                    row[name] = {"amplitude_ssim": m["amplitude"]["ssim"],
                                   "phase_ssim": m["phase"]["ssim"], "sync_s": sync["time_s"],
                                   "objective": sync["objective"],
                                   "n_patches": rec.info["n_patches_stitched"]}
                g, b, c = row["global"], row["blocks"], row["global_converged"]
                row["phase_ssim_diff"] = b["phase_ssim"] - g["phase_ssim"]
                row["amplitude_ssim_diff"] = b["amplitude_ssim"] - g["amplitude_ssim"]
                row["phase_ssim_diff_converged"] = b["phase_ssim"] - c["phase_ssim"]
                rows.append(row)
                print(f"{arm:>8} {cell:>11} {g['amplitude_ssim']:7.4f}/{b['amplitude_ssim']:.4f} "
                      f"{g['phase_ssim']:7.4f}/{b['phase_ssim']:.4f} {row['phase_ssim_diff']:+8.4f} "
                      f"{c['phase_ssim']:7.4f} {row['phase_ssim_diff_converged']:+8.4f} "
                      f"{g['sync_s']:6.2f}/{b['sync_s']:<6.2f} {b['n_patches']:>7}", flush=True)
        worst = max(abs(r["phase_ssim_diff"]) for r in rows)
        summary = {"results": str(results), "tolerance": a.tolerance, "max_abs_phase_ssim_diff": worst,
                   "max_abs_amplitude_ssim_diff": max(abs(r["amplitude_ssim_diff"]) for r in rows),
                   "max_abs_phase_ssim_diff_converged":
                       max(abs(r["phase_ssim_diff_converged"]) for r in rows),
                   "rows": rows}
        if a.out:
            (scratch / "sync_agreement.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"largest |phase SSIM difference| {worst:.4f} (tolerance {a.tolerance}); amplitude "
          f"{summary['max_abs_amplitude_ssim_diff']:.4f}; phase against the converged global "
          f"solve {summary['max_abs_phase_ssim_diff_converged']:.4f}")
    return 0 if worst <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
