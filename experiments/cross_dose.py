"""Is a trained network's quality at low dose set by its training or by the counts it reads?

    python experiments/cross_dose.py --results results/dose_overlap/scaled \
        --doses 1e3 1e5 --overlap dense --arms pinn_g1 pinn_g2 baseline [--threads 1]

Every (model dose, test dose) pair of a finished study's cells: the model trained on the
``<model dose>_<overlap>_r0`` cell reconstructs the ``<test dose>_<overlap>_r0`` cell's test split
(same object, same scan, other counts), stitched and scored by the study's own code. The model's
input normalisation is fixed at training (sqrt(counts) / sqrt(mean training counts per pixel)),
so the test counts are first multiplied by ``model dose / test dose`` in a temporary copy of the
split: the network then reads the test scan's photons at the magnitude it was trained on (at 10^3
photons the copy holds the 10^3 counts' information, their Poisson noise included, at the 10^5
scale). The diagonal reproduces the study's numbers; the off-diagonal answers two questions:

* a network trained at high dose, reading low-dose counts: is the low-dose cell's result limited
  by what the low-dose training taught, or by the photons in the patterns it reads?
* a network trained at low dose, reading high-dose counts: did the low-dose training learn the
  inverse map as well as the high-dose one?

Prints amplitude / phase SSIM for each pair (the flat object's for reference) and writes them with
the run's details to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rescaled_copy(test_path: Path, out_path: Path, factor: float) -> None:
    """``test_path`` with its counts multiplied by ``factor`` (everything else unchanged)."""
    from ptycho.data.dataset import Dataset, DatasetWriter

    with (Dataset(test_path) as ds,
          DatasetWriter(out_path, ds.n, ds.positions, ds.probe, ds.object, ds.meta()) as wr):
        for _, counts in ds.iter_batches(256):
            wr.write(counts * factor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/dose_overlap/scaled")
    ap.add_argument("--study", default=str(REPO / "studies" / "dose_overlap" / "study.yaml"))
    ap.add_argument("--scale", default="scaled")
    ap.add_argument("--doses", nargs="+", default=["1e3", "1e5"])
    ap.add_argument("--overlap", default="dense")
    ap.add_argument("--arms", nargs="+", default=["pinn_g1", "pinn_g2", "baseline"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "results" / "experiments" / "cross_dose.json"))
    a = ap.parse_args()

    from ptycho.runner import limit_threads

    limit_threads(a.threads)
    from ptycho.config import StudyConfig
    from ptycho.evaluation import evaluate_reconstruction
    from ptycho.reconstruct.inference import reconstruct_with_study

    study = StudyConfig.from_yaml(a.study)
    res = Path(a.results)
    cell = {d: f"{d}_{a.overlap}_r0" for d in a.doses}
    rows = []
    with tempfile.TemporaryDirectory(prefix="cross-dose-") as tmp:
        tmp = Path(tmp)
        for arm in a.arms:
            for dm in a.doses:
                model_dir = res / "models" / arm / cell[dm]
                for dt in a.doses:
                    test = res / "data" / cell[dt] / "test.h5"
                    factor = float(dm) / float(dt)
                    if factor != 1.0:
                        src = tmp / f"test_{dt}_x{factor:g}.h5"
                        if not src.exists():
                            rescaled_copy(test, src, factor)
                    else:
                        src = test
                    stem = f"{arm}_{dm}_on_{dt}"
                    t0 = time.perf_counter()
                    reconstruct_with_study(model_dir / "model.keras", model_dir / "bundle.json",
                                           src, study, a.scale, a.overlap,
                                           tmp / f"{stem}.h5", threads=a.threads, tmp_dir=tmp,
                                           expected_arm=arm)
                    m = evaluate_reconstruction(tmp / f"{stem}.h5", src, tmp / f"{stem}.json",
                                                tmp / f"{stem}_al.h5")
                    flat = m["reference"]["flat_object"]["phase"]["ssim"]
                    row = {"arm": arm, "model_dose": dm, "test_dose": dt, "count_factor": factor,
                           "amp_ssim": m["metrics"]["amplitude"]["ssim"],
                           "phase_ssim": m["metrics"]["phase"]["ssim"],
                           "amp_frc17_px": m["metrics"]["amplitude"]["frc17_px"],
                           "phase_frc17_px": m["metrics"]["phase"]["frc17_px"],
                           "flat_phase_ssim": flat, "wall_s": time.perf_counter() - t0}
                    rows.append(row)
                    print(f"{arm:<9} trained at {dm}, reads {dt} counts (x{factor:g}): "
                          f"SSIM {row['amp_ssim']:.3f} / {row['phase_ssim']:.3f} "
                          f"(flat object phase {flat:.3f})", flush=True)
    out = {"results": str(res), "overlap": a.overlap, "threads": a.threads, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
