"""Do the trained arms beat trivial references? Flat object and untrained networks, same scoring.

    python benchmarks/reference_arms.py [--results results/dose_overlap/scaled] [--cells 1e5_dense 1e5_sparse]

For each cell: a flat object (ones wherever the test scan illuminates) and, for every trained arm,
a network of the same architecture, normalisation and initialisation with zero training epochs,
reconstructed (same stitching, phase synchronisation included) and scored exactly like the study's
arms (ptycho.evaluation). Prints amplitude and
phase SSIM beside the trained arm's scores from the study's eval/ directory.
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
    ap.add_argument("--cells", nargs="+", default=["1e5_dense", "1e5_sparse"])
    a = ap.parse_args()

    from ptycho.config import StudyConfig
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
    arms = [x for x in study.arm_ids if x != "iterative"]
    print(f"{'cell':<12} {'arm':<10} {'trained amp':>11} {'untrained amp':>13} {'trained phase':>13} "
          f"{'untrained phase':>15}")
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
            write_reconstruction(tmp / "flat.h5", flat)
            m = evaluate_reconstruction(tmp / "flat.h5", test, tmp / "flat.json", tmp / "flat_al.h5")
            fa, fp = m["metrics"]["amplitude"]["ssim"], m["metrics"]["phase"]["ssim"]
            print(f"{cell:<12} {'flat':<10} {'':>11} {fa:>13.3f} {'':>13} {fp:>15.3f}")
            for arm in arms:
                d = tmp / arm / cell
                train_arm(arm, train, untrained, a.scale, d / "model.keras", d / "bundle.json",
                          d / "history.csv", d / "loss.png")
                rec = reconstruct_network(d / "model.keras", d / "bundle.json", test,
                                          scale.inference_batch_size,
                                          phase_sync=study.stitching.phase_sync,
                                          refine_iterations=study.stitching.refine_iterations)
                write_reconstruction(d / "recon.h5", rec)
                u = evaluate_reconstruction(d / "recon.h5", test, d / "m.json", d / "al.h5")["metrics"]
                t = json.loads((root / "eval" / arm / cell / "metrics.json").read_text())["metrics"]
                print(f"{cell:<12} {arm:<10} {t['amplitude']['ssim']:>11.3f} {u['amplitude']['ssim']:>13.3f} "
                      f"{t['phase']['ssim']:>13.3f} {u['phase']['ssim']:>15.3f}")


if __name__ == "__main__":
    main()
