"""Do the trained arms beat trivial references? Flat object and untrained networks, same scoring.

    python experiments/reference_arms.py [--results results/dose_overlap/scaled] [--cells 1e5_dense_r0 1e5_sparse_r0]
                                        [--transfer-from dense]

For each cell: a flat object (ones wherever the test scan illuminates) and, for every trained arm,
a network of the same architecture, normalisation and initialisation with zero training epochs,
reconstructed (same stitching, phase synchronisation included) and scored exactly like the study's
arms (ptycho.evaluation). Prints amplitude and
phase SSIM beside the trained arm's scores from the study's eval/ directory, and the cell's scan
coverage: how many test patterns light each pixel of the evaluation region to at least 10% of the
probe's peak intensity (mean and the share of pixels lit by only one pattern).

``--transfer-from VIEW`` also reconstructs each cell's test split with the models the study trained
on the same dose's VIEW cell (e.g. dense-trained models on the sparse test scan), to separate the
test scan's overlap from the training-set size (a cell's models are trained on its own scan).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/dose_overlap/scaled")
    ap.add_argument("--study", default="studies/dose_overlap/study.yaml")
    ap.add_argument("--scale", default="scaled")
    ap.add_argument("--cells", nargs="+", default=["1e5_dense_r0", "1e5_sparse_r0"])
    ap.add_argument("--transfer-from", default=None, metavar="VIEW",
                    help="overlap view whose trained models also reconstruct each cell")
    a = ap.parse_args()

    from ptycho.config import StudyConfig, is_solver_arm
    from ptycho.data.dataset import Dataset
    from ptycho.evaluation import evaluate_reconstruction
    from ptycho.reconstruct.inference import reconstruct_network
    from ptycho.reconstruct.io import Reconstruction, write_reconstruction
    from ptycho.training.fit import train_arm

    study = StudyConfig.from_yaml(a.study)
    scale = study.scale(a.scale)
    untrained = dataclasses.replace(
        study, scales={**study.scales, a.scale: dataclasses.replace(
            scale, training=dataclasses.replace(scale.training, epochs=0))})
    root = Path(a.results)
    arms = [x for x in study.arm_ids if not is_solver_arm(x)]
    print(f"{'cell':<12} {'arm':<10} {'trained amp':>11} {'untrained amp':>13} {'trained phase':>13} "
          f"{'untrained phase':>15}")

    def score(model_dir: Path, out: Path, test: Path) -> dict:
        """Reconstruct ``test`` with the model in ``model_dir`` (the study's stitching) and score
        it like the study's arms; the metrics dict."""
        rec = reconstruct_network(model_dir / "model.keras", model_dir / "bundle.json", test,
                                  scale.inference_batch_size,
                                  phase_sync=study.stitching.phase_sync,
                                  refine_iterations=study.stitching.refine_iterations,
                                  sync_method=study.stitching.sync_method)
        write_reconstruction(out / "recon.h5", rec)
        return evaluate_reconstruction(out / "recon.h5", test, out / "m.json", out / "al.h5")["metrics"]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for cell in a.cells:
            test = root / "data" / cell / "test.h5"
            train = root / "data" / cell / "train.h5"
            with Dataset(test) as ds:
                from ptycho.evaluation import illumination_map

                w = illumination_map(ds.object_shape, ds.positions, ds.probe)
                flat = Reconstruction(object=(w > 0).astype(np.complex64), weight=w, arm="flat",
                                      gridsize=1, dose=ds.dose, overlap_view=cell.split("_")[1],
                                      n_patterns=ds.n, wall_time_s=0.0, source=str(test))
                from ptycho.evaluation import evaluation_region

                n_lit = coverage(ds.object_shape, ds.positions, ds.probe)[
                    evaluation_region(ds.object_shape, ds.positions, ds.probe)]
            write_reconstruction(tmp / "flat.h5", flat)
            m = evaluate_reconstruction(tmp / "flat.h5", test, tmp / "flat.json", tmp / "flat_al.h5")
            fa, fp = m["metrics"]["amplitude"]["ssim"], m["metrics"]["phase"]["ssim"]
            print(f"{cell:<12} {'flat':<10} {'':>11} {fa:>13.3f} {'':>13} {fp:>15.3f}")
            print(f"{cell:<12} coverage: {n_lit.mean():.2f} test patterns per evaluated pixel "
                  f"(>= 10% of peak intensity); {np.mean(n_lit <= 1):.0%} of the region lit by one")
            for arm in arms:
                d = tmp / arm / cell
                train_arm(arm, train, untrained, a.scale, d / "model.keras", d / "bundle.json",
                          d / "history.csv", d / "loss.png")
                u = score(d, d, test)
                t = json.loads((root / "eval" / arm / cell / "metrics.json").read_text())["metrics"]
                print(f"{cell:<12} {arm:<10} {t['amplitude']['ssim']:>11.3f} {u['amplitude']['ssim']:>13.3f} "
                      f"{t['phase']['ssim']:>13.3f} {u['phase']['ssim']:>15.3f}")
                dose, view, rep = cell.split("_")  # e.g. 1e5, sparse, r0
                if a.transfer_from and a.transfer_from != view:
                    src = root / "models" / arm / f"{dose}_{a.transfer_from}_{rep}"
                    x = score(src, tmp / "transfer" / arm / cell, test)
                    print(f"{cell:<12} {arm:<10} trained on {dose}_{a.transfer_from}: amplitude / phase "
                          f"SSIM {x['amplitude']['ssim']:.3f} / {x['phase']['ssim']:.3f}, MAE "
                          f"{x['amplitude']['mae']:.4f} / {x['phase']['mae']:.4f} rad")


def coverage(object_shape, positions, probe) -> np.ndarray:
    """(H, W) count of scan patterns whose probe intensity at the pixel reaches 10% of its peak."""
    from ptycho.evaluation import illumination_map

    intensity = np.abs(np.asarray(probe)) ** 2
    lit = (intensity >= 0.1 * intensity.max()).astype(np.float64)
    return illumination_map(object_shape, positions, np.sqrt(lit))


if __name__ == "__main__":
    main()
