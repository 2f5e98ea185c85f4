"""Full-scale rehearsal on CPU: does the ``full`` configuration's network train at N = 128?

    python experiments/rehearse_full_scale.py [--object-size 448 384] [--epochs 6] [--dose 1e5]
                                             [--arms pinn_g1 pinn_g2 baseline] [--threads 2]
                                             [--out results/experiments/rehearsal.json]

The study's ``full`` scale (N = 128, its backbone, learning rate, batch size and support) on a
smaller object than the full study's (so a CPU finishes in minutes: a few hundred patterns instead
of thousands) and fewer epochs: one dense cell is simulated, every network arm is trained and
reconstructs the cell's test split (the study's stitching), and each reconstruction is compared with
the ground truth by the Pearson correlation of amplitude and of phase over the well-lit region
(after one least-squares complex scale, as the evaluation aligns) and by the study's SSIM. The same
architecture with its initial weights (an untrained twin: zero epochs) is scored alongside. A
configuration "collapses" when a trained arm's correlations stay at the untrained twin's or below
0.5. Writes one JSON file and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def correlations(rec, truth, probe) -> tuple[float, float]:
    """(amplitude, phase) Pearson correlation with the truth over pixels lit to >= 10% of the
    probe's peak, after one least-squares complex scale."""
    region = rec.weight >= 0.1 * float((np.abs(probe) ** 2).max())
    r, t = rec.object[region].astype(np.complex128), truth[region].astype(np.complex128)
    r = r * np.vdot(r, t) / max(np.vdot(r, r).real, 1e-12)
    amp = np.corrcoef(np.abs(r), np.abs(t))[0, 1]
    ph = np.corrcoef(np.angle(r), np.angle(t))[0, 1]
    return float(np.nan_to_num(amp)), float(np.nan_to_num(ph))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(REPO / "studies" / "dose_overlap" / "study.yaml"))
    ap.add_argument("--object-size", nargs=2, type=int, default=[448, 384])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--dose", default="1e5")
    ap.add_argument("--overlap", default="dense")
    ap.add_argument("--arms", nargs="+", default=["pinn_g1", "pinn_g2", "baseline"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "results" / "experiments" / "rehearsal.json"))
    a = ap.parse_args()

    from ptycho.runner import limit_threads

    limit_threads(a.threads)
    from ptycho.config import StudyConfig
    from ptycho.data.dataset import Dataset
    from ptycho.data.generate import simulate_cell
    from ptycho.evaluation import evaluate_reconstruction
    from ptycho.reconstruct.inference import reconstruct_with_study
    from ptycho.training.fit import train_arm

    study = StudyConfig.from_yaml(a.study)
    full = study.scale("full")
    rehearsal = dataclasses.replace(
        full, object_size=tuple(a.object_size),
        training=dataclasses.replace(full.training, epochs=a.epochs))
    untrained = dataclasses.replace(
        rehearsal, training=dataclasses.replace(rehearsal.training, epochs=0))
    result = {"study": a.study, "scale": "full (rehearsal)", "N": full.N,
              "object_size": list(a.object_size), "epochs": a.epochs,
              "training": dataclasses.asdict(rehearsal.training), "dose": a.dose,
              "overlap": a.overlap, "threads": a.threads, "arms": {}}
    with tempfile.TemporaryDirectory(prefix="rehearsal-") as tmp:
        tmp = Path(tmp)
        for name, sc in (("trained", rehearsal), ("untrained", untrained)):
            st = dataclasses.replace(study, scales={**study.scales, "full": sc})
            if name == "trained":
                t0 = time.perf_counter()
                simulate_cell(st, "full", a.dose, a.overlap, tmp / "train.h5", tmp / "test.h5")
                with Dataset(tmp / "train.h5") as tr, Dataset(tmp / "test.h5") as te:
                    result.update(n_train=tr.n, n_test=te.n, simulate_s=time.perf_counter() - t0)
                    truth, probe = te.object, te.probe
            for arm in a.arms:
                d = tmp / name / arm
                # zero epochs (untrained): the same architecture, normalisation and initialisation
                b = train_arm(arm, tmp / "train.h5", st, "full", d / "model.keras",
                              d / "bundle.json", d / "history.csv", d / "loss.png",
                              threads=a.threads)
                if name == "trained":
                    result["arms"].setdefault(arm, {}).update(
                        fit_s=b["fit_time_s"], epochs_run=b["epochs_run"],
                        parameters=b["backbone"]["parameters"],
                        train_patterns_per_s=(b["n_train"] + b["n_val"]) / b["epoch_times_s"][-1],
                        loss=[b["initial_loss"], b["final_loss"]])
                rec = reconstruct_with_study(d / "model.keras", d / "bundle.json", tmp / "test.h5",
                                             st, "full", a.overlap, d / "recon.h5",
                                             threads=a.threads, tmp_dir=tmp)
                m = evaluate_reconstruction(d / "recon.h5", tmp / "test.h5", d / "m.json",
                                            d / "al.h5")
                amp, ph = correlations(rec, truth, probe)
                result["arms"].setdefault(arm, {})[name] = {
                    "amplitude_correlation": amp, "phase_correlation": ph,
                    "amplitude_ssim": m["metrics"]["amplitude"]["ssim"],
                    "phase_ssim": m["metrics"]["phase"]["ssim"],
                    "recon_s": rec.wall_time_s}
                result["flat_object_ssim"] = [m["reference"]["flat_object"]["amplitude"]["ssim"],
                                              m["reference"]["flat_object"]["phase"]["ssim"]]
    for arm, r in result["arms"].items():
        t, u = r["trained"], r["untrained"]
        r["collapsed"] = not (min(t["amplitude_correlation"], t["phase_correlation"]) > 0.5
                              and t["amplitude_correlation"] > u["amplitude_correlation"]
                              and t["phase_correlation"] > u["phase_correlation"])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"full-scale rehearsal: N = {full.N}, object {a.object_size}, {result['n_train']} train / "
          f"{result['n_test']} test patterns, {a.epochs} epochs, {a.threads} threads")
    print("| arm | trained amp / phase corr | untrained amp / phase corr | trained amp / phase "
          "SSIM | fit (s) | patterns/s | collapsed |")
    print("|---|---|---|---|---:|---:|---|")
    for arm, r in result["arms"].items():
        t, u = r["trained"], r["untrained"]
        print(f"| {arm} | {t['amplitude_correlation']:.3f} / {t['phase_correlation']:.3f} | "
              f"{u['amplitude_correlation']:.3f} / {u['phase_correlation']:.3f} | "
              f"{t['amplitude_ssim']:.3f} / {t['phase_ssim']:.3f} | {r['fit_s']:.0f} | "
              f"{r['train_patterns_per_s']:.1f} | {r['collapsed']} |")
    print(f"flat object SSIM amp / phase: {result['flat_object_ssim'][0]:.3f} / "
          f"{result['flat_object_ssim'][1]:.3f}; written to {out}")


if __name__ == "__main__":
    main()
