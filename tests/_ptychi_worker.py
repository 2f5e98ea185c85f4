"""pty-chi work for tests/test_iterative.py, run in its own Python process.

Importing torch/pty-chi after TensorFlow segfaults (docs/conventions.md, "Two frameworks, two
processes"), so the test suite never imports pty-chi itself: it runs ``python tests/_ptychi_worker.py OUT_DIR`` and asserts
on the numbers this script writes to ``OUT_DIR/results.json``.

Cases
-----
forward     pty-chi's forward model (through our conversion) on the ground truth vs our expected
            counts, at integer and at fractional positions.
recovery    noise-free (expected counts at dose 1e9), dense (f = 0.7) scan of a 96 x 96 object,
            N = 32, simulated probe; LSQML from a flat start; phase SSIM in the evaluation region.
orientation an object without mirror or transpose symmetry; registration shift and correlation
            with the truth and with its flipped / transposed / rotated versions.
snapshots   the recovery solve's convergence snapshots (default epochs) and their file; the same
            30-epoch solve paused at other epochs gives the same object.
hybrid      LSQML started from a stand-in network reconstruction (an unrelated object, arm
            pinn_g1) on the recovery data, beside the flat start's first snapshots.
script      workflow/scripts/reconstruct_iterative.py with a stand-in ``snakemake`` object, flat and
            network-started (input ``start``).
install     ptychi_check.ensure_ptychi() on this installation (its own subprocess, in a thread).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ptycho.config import IterativeConfig
from ptycho.data.dataset import DatasetMeta, DatasetWriter
from ptycho.physics.forward import simulate_expected
from ptycho.physics.object import skimage_object
from ptycho.physics.probe import energy_diameter, simulated_probe
from ptycho.physics.scan import ScanRegion, scan_positions

N = 32
DOSE = 1e9  # noise-free: expected counts are written as the data
EPOCHS = 100  # recovery case (about 17 s on one core)
ORIENTATION_EPOCHS = 30
HYBRID_EPOCHS = 5
NETWORK_WALL_S = 2.5  # inference time recorded in the stand-in network reconstruction
SCRIPT_EPOCHS = 3
ROOT = Path(__file__).resolve().parents[1]


def write_dataset(path: Path, obj, probe, positions, dose) -> None:
    meta = DatasetMeta(dose=float(dose), overlap_target=0.7, overlap_measured=0.7, overlap_area=0.0,
                       probe_diameter=energy_diameter(probe), split="test", seed=0,
                       config={"overlap_view": "dense", "object_size": list(obj.shape)})
    with DatasetWriter(path, len(positions), positions, probe, obj, meta, chunk=128) as w:
        w.write(simulate_expected(obj, probe, positions, dose).astype(np.float32))


def dense_positions(shape, probe, seed=3):
    d = energy_diameter(probe, 0.9)
    return scan_positions("raster", 0.7, d, ScanRegion.for_object(shape, N), 0.1, seed)


def evaluation_region(weight, probe, erode=2):
    """Pixels whose summed |P|^2 reaches 10% of the probe's peak intensity, eroded."""
    mask = weight >= 0.1 * float(np.max(np.abs(probe)) ** 2)
    return ndimage.binary_erosion(mask, iterations=erode)


def align(rec, truth, mask):
    """Optimal global complex scale (removes the phase offset), then phase-ramp removal."""
    s = np.vdot(rec[mask], truth[mask]) / np.vdot(rec[mask], rec[mask])
    r = rec * s
    d = np.angle(r * np.conj(truth))
    yy, xx = np.nonzero(mask)
    A = np.stack([np.ones(yy.size), yy, xx], 1).astype(np.float64)
    c, *_ = np.linalg.lstsq(A, d[mask], rcond=None)
    Y, X = np.mgrid[: rec.shape[0], : rec.shape[1]]
    return r * np.exp(-1j * (c[0] + c[1] * Y + c[2] * X))


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def phase_ssim(rec, truth, mask) -> float:
    from skimage.metrics import structural_similarity

    pr, pt = np.angle(align(rec, truth, mask)), np.angle(truth)
    sl = bbox(mask)
    data_range = float(pt[mask].max() - pt[mask].min())
    _, smap = structural_similarity(pt[sl], pr[sl], data_range=data_range, full=True)
    return float(smap[mask[sl]].mean())


def asymmetric_object(shape, seed=5):
    """Smooth random phase blobs, a bar 'F' and an independent amplitude: no symmetry."""
    rng = np.random.default_rng(seed)
    H, W = shape
    Y, X = np.mgrid[:H, :W].astype(np.float64)
    phase = np.zeros(shape)
    for _ in range(12):
        cy, cx = rng.uniform(0.2, 0.8) * H, rng.uniform(0.2, 0.8) * W
        s, a = rng.uniform(2.5, 6.0), rng.uniform(-1.0, 1.0)
        phase += a * np.exp(-((Y - cy) ** 2 + (X - cx) ** 2) / (2 * s**2))
    f = np.zeros(shape)
    y0, x0 = int(0.3 * H), int(0.35 * W)
    f[y0 : y0 + 24, x0 : x0 + 4] = 1  # stem
    f[y0 : y0 + 4, x0 : x0 + 16] = 1  # top bar
    f[y0 + 10 : y0 + 14, x0 : x0 + 10] = 1  # middle bar
    phase += 0.8 * ndimage.gaussian_filter(f, 0.8)
    amp = 0.75 + 0.2 * np.tanh(ndimage.gaussian_filter(rng.normal(size=shape), 4) * 8)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def correlation(a, b, mask) -> float:
    a, b = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def case_forward(obj, probe, out):
    from ptycho.reconstruct.iterative import ptychi_expected_counts

    rng = np.random.default_rng(1)
    region = ScanRegion.for_object(obj.shape, N)
    pos = np.stack([rng.uniform(region.y0, region.y1, 12), rng.uniform(region.x0, region.x1, 12)], 1)
    pos[:6] = np.round(pos[:6])
    dose = 1e5
    ours = simulate_expected(obj, probe, pos, dose)
    theirs = ptychi_expected_counts(obj, probe, pos, dose)
    flat = ptychi_expected_counts(np.ones_like(obj), probe, pos[:2], dose)
    i, f = slice(0, 6), slice(6, 12)
    out["forward"] = {
        "integer_max_rel_err": float(np.abs(theirs[i] - ours[i]).max() / ours[i].max()),
        "fractional_rel_l2": float(np.linalg.norm(theirs[f] - ours[f]) / np.linalg.norm(ours[f])),
        "total_ratio": float(theirs.sum() / ours.sum()),
        "flat_photons_per_pattern": [float(v) for v in flat.sum(axis=(1, 2))],
        "dose": dose,
        "peak_pixel_ours": [int(v) for v in np.unravel_index(np.argmax(ours[0]), ours[0].shape)],
        "peak_pixel_theirs": [int(v) for v in np.unravel_index(np.argmax(theirs[0]), ours[0].shape)],
    }


def reconstruct(path: Path, epochs: int, snapshots=None, start=None, name="recon"):
    from ptycho.reconstruct.io import read_reconstruction, write_reconstruction
    from ptycho.reconstruct.iterative import reconstruct_iterative

    cfg = IterativeConfig(iterations=epochs, batch_size=64, noise_model="gaussian",
                          refine_probe=False, snapshots=snapshots)
    rec = reconstruct_iterative(path, cfg, threads=1, device="cpu", start=start)
    out = path.with_suffix(f".{name}.h5")
    write_reconstruction(out, rec)
    return read_reconstruction(out)


def case_recovery(obj, probe, tmp: Path, out):
    pos = dense_positions(obj.shape, probe)
    path = tmp / "dense_noise_free.h5"
    write_dataset(path, obj, probe, pos, DOSE)
    t0 = time.perf_counter()
    rec = reconstruct(path, EPOCHS)
    mask = evaluation_region(rec.weight, probe)
    flat_mask = mask & (rec.weight > 0)
    out["recovery"] = {
        "n_patterns": len(pos),
        "phase_ssim": phase_ssim(rec.object, obj, mask),
        "flat_start_phase_ssim": phase_ssim(np.ones_like(obj), obj, mask),
        "region_pixels": int(mask.sum()),
        "object_shape": list(rec.object.shape),
        "zero_outside_coverage": bool(np.all(rec.object[rec.weight == 0] == 0)),
        "covered_nonzero": bool(np.all(rec.object[flat_mask] != 0)),
        "weight_equals_illumination": _check_weight(rec.weight, probe, pos),
        "info": {k: rec.info[k] for k in ("iterations", "noise_model", "refine_probe", "device",
                                          "wall_time_s", "cost_history", "initial_object")},
        "arm": rec.arm, "gridsize": rec.gridsize, "dose": rec.dose,
        "overlap_view": rec.overlap_view, "n_patterns_attr": rec.n_patterns,
        "elapsed_s": time.perf_counter() - t0,
    }
    snap = rec.snapshots
    out["snapshots"] = {
        "test": str(path), "recon": str(path.with_suffix(".recon.h5")),
        "epochs": snap.epochs.tolist(), "wall_time_s": snap.wall_time_s.tolist(),
        "info_epochs": rec.info["snapshot_epochs"], "wall_time_attr": rec.wall_time_s,
        "last_equals_object": bool(np.array_equal(snap.objects[-1], rec.object)),
        "phase_ssim": [phase_ssim(o, obj, mask) for o in snap.objects],
    }


def _check_weight(weight, probe, pos) -> bool:
    """The map sums |P|^2 over positions: integrates to n * sum|P|^2, peak >= probe peak."""
    total = float(weight.sum())
    expect = len(pos) * float(np.sum(np.abs(probe) ** 2))
    return bool(abs(total - expect) < 1e-4 * expect)


def case_orientation(tmp: Path, out):
    from skimage.registration import phase_cross_correlation

    shape = (80, 80)
    obj = asymmetric_object(shape)
    probe = simulated_probe(N)
    pos = dense_positions(shape, probe, seed=4)
    path = tmp / "asymmetric.h5"
    write_dataset(path, obj, probe, pos, DOSE)
    rec = reconstruct(path, ORIENTATION_EPOCHS)
    mask = evaluation_region(rec.weight, probe)
    r = np.angle(align(rec.object, obj, mask))
    t = np.angle(obj)
    sl = bbox(mask)
    rt = np.where(mask, r - r[mask].mean(), 0)[sl]
    tt = np.where(mask, t - t[mask].mean(), 0)[sl]
    shift, _, _ = phase_cross_correlation(tt, rt, upsample_factor=20)
    variants = {"flipud": np.flipud(t), "fliplr": np.fliplr(t), "transpose": t.T,
                "rot180": np.rot90(t, 2), "rot90": np.rot90(t), "antitranspose": np.rot90(t, 2).T}
    out["orientation"] = {
        "n_patterns": len(pos),
        "shift": [float(v) for v in shift],
        "corr_truth": correlation(r, t, mask),
        "corr_variants": {k: correlation(r, v, mask) for k, v in variants.items()},
        "truth_self_corr_variants": {k: correlation(t, v, mask) for k, v in variants.items()},
        "phase_ssim": phase_ssim(rec.object, obj, mask),
    }
    paused = reconstruct(path, ORIENTATION_EPOCHS, snapshots=(1, 3, 7, ORIENTATION_EPOCHS),
                         name="paused")
    out["snapshots"]["pause_max_abs_diff"] = float(np.abs(paused.object - rec.object).max())
    out["snapshots"]["paused_epochs"] = paused.snapshots.epochs.tolist()


def case_hybrid(obj, probe, tmp: Path, out):
    """Start from a stand-in network output that is unrelated to the truth (another object),
    so only the start can make the first epoch resemble it."""
    from ptycho.reconstruct.io import Reconstruction, write_reconstruction
    from ptycho.reconstruct.iterative import illumination_map, load_network_start

    path = tmp / "dense_noise_free.h5"
    pos = dense_positions(obj.shape, probe)
    weight = illumination_map(probe, pos, obj.shape)
    net = np.where(weight > 0, asymmetric_object(obj.shape), 0).astype(np.complex64)
    net_path = tmp / "network.recon.h5"
    write_reconstruction(net_path, Reconstruction(
        object=net, weight=weight.astype(np.float32), arm="pinn_g1", gridsize=1, dose=DOSE,
        overlap_view="dense", n_patterns=len(pos), wall_time_s=NETWORK_WALL_S, source=str(path)))
    start = load_network_start(net_path, "pinn_g1")
    hyb = reconstruct(path, HYBRID_EPOCHS, snapshots=(1,), start=start, name="hybrid")
    flat = reconstruct(path, HYBRID_EPOCHS, snapshots=(1,), name="flat5")
    lit = weight >= 0.1 * weight.max()

    def dist(a, b):
        return float(np.linalg.norm((np.asarray(a) - b)[lit]) / np.sqrt(lit.sum()))

    h1, f1 = hyb.snapshots.objects[0], flat.snapshots.objects[0]
    out["hybrid"] = {
        "network_recon": str(net_path), "recon": str(path.with_suffix(".hybrid.h5")),
        "test": str(path), "arm": hyb.arm, "info": hyb.info, "wall_time_s": hyb.wall_time_s,
        "snapshot_wall_time_s": hyb.snapshots.wall_time_s.tolist(),
        "epochs": hyb.snapshots.epochs.tolist(),
        "first_to_network": dist(h1, net), "first_to_flat": dist(h1, 1.0),
        "first_to_truth": dist(h1, obj),
        "flat_first_to_network": dist(f1, net), "flat_first_to_flat": dist(f1, 1.0),
        "flat_info_start": flat.info["initial_object"],
        "flat_start_sha256": flat.info["start_object_sha256"],
    }


def case_script(tmp: Path, out):
    """The Snakemake adapter end to end, with a stand-in ``snakemake`` object."""
    import runpy
    import types

    import yaml

    raw = yaml.safe_load((ROOT / "studies" / "dose_overlap" / "study.yaml").read_text())
    raw["scales"]["scaled"]["iterative"]["iterations"] = SCRIPT_EPOCHS
    recon = tmp / "script" / "recon.h5"
    smk = types.SimpleNamespace(
        input=types.SimpleNamespace(test=str(tmp / "asymmetric.h5")),
        output=types.SimpleNamespace(recon=str(recon)),
        params=types.SimpleNamespace(study=raw, scale="scaled", overlap="sparse"),
        threads=1, log=[], rule="reconstruct_iterative",
    )
    runpy.run_path(str(ROOT / "workflow" / "scripts" / "reconstruct_iterative.py"),
                   init_globals={"snakemake": smk}, run_name="__main__")
    from ptycho.reconstruct.io import read_reconstruction

    rec = read_reconstruction(recon)
    out["script"] = {"exists": recon.is_file(), "overlap_view": rec.overlap_view, "arm": rec.arm,
                     "iterations": rec.info["iterations"],
                     "n_costs": len(rec.info["cost_history"]), "shape": list(rec.object.shape),
                     "snapshot_epochs": rec.snapshots.epochs.tolist()}
    # the hybrid rule: the same script with a network reconstruction as input 'start'
    net_recon = tmp / "asymmetric.paused.h5"  # stands in for a network file: relabel a copy
    import shutil

    import h5py

    fake = tmp / "script" / "pinn_g2.h5"
    shutil.copy(net_recon, fake)
    with h5py.File(fake, "a") as f:
        f.attrs["arm"] = "pinn_g2"
        del f["snapshots"]
    smk.input.start = str(fake)
    smk.params.start_arm = "pinn_g2"
    smk.output.recon = str(tmp / "script" / "hybrid.h5")
    runpy.run_path(str(ROOT / "workflow" / "scripts" / "reconstruct_iterative.py"),
                   init_globals={"snakemake": smk}, run_name="__main__")
    hyb = read_reconstruction(smk.output.recon)
    out["script"]["hybrid"] = {"arm": hyb.arm, "start_arm": hyb.info["start_arm"],
                               "start_source": hyb.info["start_source"],
                               "start_sha256": hyb.info["start_object_sha256"],
                               "network_recon": str(fake)}


def start_install_check(out):
    """ensure_ptychi() spawns its own interpreter; run it beside the cases (2 cores)."""
    import threading

    from ptycho.reconstruct.ptychi_check import ensure_ptychi

    def check():
        try:
            ensure_ptychi()
            out["ensure_ptychi"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["ensure_ptychi"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=check)
    thread.start()
    return thread


def main(argv) -> int:
    tmp = Path(argv[1])
    tmp.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    t0 = time.perf_counter()
    check = start_install_check(out)
    obj = skimage_object((96, 96))
    probe = simulated_probe(N)
    case_forward(obj, probe, out)
    case_recovery(obj, probe, tmp, out)
    case_orientation(tmp, out)
    case_hybrid(obj, probe, tmp, out)
    case_script(tmp, out)
    check.join()
    out["total_s"] = time.perf_counter() - t0
    (tmp / "results.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
