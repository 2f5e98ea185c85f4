"""Where a trained network arm's amplitude error comes from: its patches, its training rows, or the
pixel scale the metric looks at.

    python benchmarks/bench_pattern_size.py --sizes 64 --doses 1e5 --arms pinn_g1 --keep
    python benchmarks/bench_patch_error.py \
        benchmarks/out/pattern_size_data/runs/N64_512x448_1e5_dense_pinn_g1_default_10 \
        benchmarks/out/pattern_size_data/N64_512x448_1e5_dense [--out report.json]

The first argument is a run kept by ``bench_pattern_size.py --keep`` (model.keras, bundle.json,
recon.h5, aligned.h5, metrics.json), the second its cell (train.h5, test.h5 with ground truth).
It prints and writes (``--out``, JSON):

1. The patch error profile (``ptycho.evaluation.patches``) of the model's predicted patches on the
   train split and on the test split, by ring around the patch centre: the error every patch shares
   (bias), the root-mean-square error and the spread of the truth. Similar errors on both splits
   say the network fails on single patterns, not on rows it has not seen.
2. Ground-truth diagnostics of the test reconstruction, not methods (both use the truth):
   the amplitude SSIM of the |P|^2-weighted average of the patches' amplitudes as they are and
   with the test split's shared bias removed from every patch before averaging (how much of the
   loss the error shared by every patch explains), and the amplitude SSIM of the aligned
   reconstruction after a Gaussian blur of 1, 2 and 3 pixels (how much is error at the pixel scale
   the 11-pixel SSIM window sees, which the flat object does not have).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np


def profile_split(model, bundle: dict, path: Path, batch_size: int, shared_bias=None):
    """The patch error profile on one split, and the |P|^2-weighted average of the patches'
    amplitudes (each with ``shared_bias`` subtracted when given) on the object grid."""
    from ptycho.data.dataset import Dataset
    from ptycho.evaluation.patches import PatchErrorProfile
    from ptycho.reconstruct.inference import predicted_patches, prediction_model, prediction_table
    from ptycho.reconstruct.stitch import StitchAccumulator

    predict = prediction_model(model, bundle["arm"])
    with Dataset(path, require_object=True) as ds:
        table = prediction_table(bundle, ds, ds.split)
        prof = PatchErrorProfile(ds.object, ds.probe)
        plain = StitchAccumulator(ds.probe, ds.object_shape)
        debiased = StitchAccumulator(ds.probe, ds.object_shape)
        for patches, centres in predicted_patches(predict, ds, table, batch_size):
            prof.add(patches, centres)
            amp = np.abs(patches)
            plain.add(amp, centres)
            if shared_bias is not None:
                debiased.add(amp - shared_bias[None], centres)
    return prof.result(), plain.result()[0].real, (debiased.result()[0].real
                                                   if shared_bias is not None else None)


def amplitude_ssim(run: Path, cell: Path, amplitude: np.ndarray) -> float:
    """The evaluation's amplitude SSIM of the run's reconstruction with its amplitude replaced."""
    from ptycho import api
    from ptycho.reconstruct.io import read_reconstruction, write_reconstruction

    rec = read_reconstruction(run / "recon.h5")
    obj = amplitude * np.exp(1j * np.angle(rec.object))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recon.h5"
        write_reconstruction(path, dataclasses.replace(rec, object=obj.astype(np.complex64)))
        return float(api.evaluate(path, cell / "test.h5", out_dir=Path(tmp) / "eval")
                     .metrics["amplitude"]["ssim"])


def blurred_ssim(run: Path, sigmas=(1.0, 2.0, 3.0)) -> dict:
    """Amplitude SSIM of the run's aligned reconstruction (aligned.h5) blurred by each sigma."""
    import h5py
    from scipy.ndimage import gaussian_filter

    from ptycho.evaluation.metrics import ssim

    with h5py.File(run / "aligned.h5", "r") as f:
        a, t, m = np.abs(f["aligned"][()]), np.abs(f["truth"][()]), f["mask"][()].astype(bool)
    R = float(t[m].max() - t[m].min())
    return {f"{s:g}": ssim(gaussian_filter(a, s), t, R, m) for s in sigmas}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("cell", type=Path)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    from ptycho.runner import limit_threads

    limit_threads(a.threads)
    from ptycho.models.bundle import load_model, read_bundle
    from ptycho.models.runtime import configure_tensorflow

    configure_tensorflow(a.threads)
    bundle = read_bundle(a.run / "bundle.json")
    model = load_model(a.run / "model.keras", bundle, a.run / "bundle.json")
    train, _, _ = profile_split(model, bundle, a.cell / "train.h5", a.batch_size)
    test, plain, _ = profile_split(model, bundle, a.cell / "test.h5", a.batch_size)
    _, _, debiased = profile_split(model, bundle, a.cell / "test.h5", a.batch_size,
                                   shared_bias=test["bias"])
    stitched = json.loads((a.run / "metrics.json").read_text())["metrics"]["amplitude"]["ssim"]
    report = {
        "run": str(a.run), "arm": bundle["arm"], "N": bundle["N"],
        "profiles": {s: {"n_patches": p["n_patches"], "gain": p["gain"], "rings": p["rings"]}
                     for s, p in (("train", train), ("test", test))},
        "test_amplitude_ssim": {
            "reconstruction": stitched,
            "amplitude_average": amplitude_ssim(a.run, a.cell, plain),
            "amplitude_average_shared_bias_removed": amplitude_ssim(a.run, a.cell, debiased),
            "reconstruction_blurred_sigma_px": blurred_ssim(a.run)},
    }
    print(f"{bundle['arm']} N = {bundle['N']}: patch amplitude error by ring (train | test)")
    print("| r (px) | probe |P|^2 | bias | rmse | truth std | bias | rmse | truth std |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rt, rs in zip(train["rings"], test["rings"], strict=True):
        if rt["probe_intensity"] < 1e-3:
            break
        print(f"| {rt['r_px'][0]}-{rt['r_px'][1]} | {rt['probe_intensity']:.3f} | "
              f"{rt['bias']:+.3f} | {rt['rmse']:.3f} | {rt['true_std']:.3f} | "
              f"{rs['bias']:+.3f} | {rs['rmse']:.3f} | {rs['true_std']:.3f} |")
    print(f"patch gain (|P|^2-weighted, predicted / true): train {train['gain']['mean']:.3f} ± "
          f"{train['gain']['std']:.3f}, test {test['gain']['mean']:.3f} ± {test['gain']['std']:.3f}")
    print("test amplitude SSIM:", json.dumps(report["test_amplitude_ssim"]))
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
