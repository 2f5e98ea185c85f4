"""Network inference on the test split and stitching into the full object.

The test patterns are predicted batch by batch and every predicted patch is written, shifted onto
the object grid, to a temporary on-disk ``PatchStore``; the store then synchronises the patches'
phase offsets (optional, ``ptycho.reconstruct.patchstore``) and stitches them with probe-intensity
weights, streaming batches, so memory is one batch plus a few object-sized canvases. For
gridsize 2 there is one group per test position (``make_groups`` with the grouping seed recorded in
the bundle) and every member patch of every group is stitched, so a position contributes once as a
seed and once per group that drew it as a neighbour.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ptycho.data.batches import BatchSource, count_statistics
from ptycho.data.dataset import Dataset
from ptycho.data.grouping import cell_labels, group_table, grouping_rng
from ptycho.errors import DatasetError, TrainingError
from ptycho.models.bundle import load_model, read_bundle
from ptycho.reconstruct.io import Reconstruction
from ptycho.reconstruct.patchstore import PatchStore

log = logging.getLogger(__name__)

def prediction_model(model, arm: str):
    """A function inputs-batch -> complex patches (b, N, N, C k) for the arm's model: the
    baseline's (amplitude, phase) output, or the PINN's ``object_patches`` (what its physics layer
    sees); k > 1 for an ensemble, its members' patches side by side (member-major)."""
    if arm == "baseline":
        def predict(x):  # channels (amplitude, phase) per ensemble member
            out = model.predict_on_batch(x)
            return out[..., 0::2] * np.exp(1j * out[..., 1::2].astype(np.float64))
        return predict
    from ptycho.models.pinn import object_model

    sub = object_model(model)

    def predict(x):
        re, im = sub.predict_on_batch(x)
        return re.astype(np.float64) + 1j * im.astype(np.float64)
    return predict


def ensemble_of(model, arm: str, C: int) -> int:
    """The number of networks of a trained arm's model (an ensemble's members are side by side in
    its output: the baseline's (amplitude, phase) pairs, the PINN's object patches per group
    member)."""
    if arm == "baseline":
        return int(model.output.shape[-1]) // 2
    from ptycho.models.pinn import ensemble_size

    return ensemble_size(model, C)


def prediction_table(bundle: dict, ds: Dataset, split: str = "test"):
    """The groups an arm's model predicts on ``ds`` (one per position; for gridsize 2 drawn with
    the grouping seed the bundle records and the ``split``'s stream, as the workflow draws them)."""
    dose_lbl, view = cell_labels(ds)
    return group_table(ds.positions, int(bundle["gridsize"]), int(bundle["config"]["neighbours"]),
                       int(bundle["N"]), grouping_rng(int(bundle["seeds"]["grouping"]), split,
                                                      dose_lbl, view, ds.replicate))


def predicted_patches(predict, ds: Dataset, table, batch_size: int):
    """Yield the predicted patches of ``table``'s groups, ``batch_size`` groups at a time:
    (patches (b * C * k, N, N) complex, their centre positions (b * C * k, 2)), every member of a
    group with its own position, and for an ensemble of k networks every network's patch;
    ``predict`` from :func:`prediction_model`."""
    N = ds.N
    positions = ds.positions
    source = BatchSource(ds, table, np.arange(len(table)), batch_size, "pinn")
    for s in range(0, len(table), batch_size):
        items = np.arange(s, min(s + batch_size, len(table)))
        x, _ = source.batch(items)  # inputs in the layout of the training pipeline
        patches = predict(x)  # (b, N, N, C k) complex: k ensemble members, member-major
        members = table.members[items]
        members = np.tile(members, (1, patches.shape[-1] // members.shape[1])).ravel()
        yield patches.transpose(0, 3, 1, 2).reshape(-1, N, N), positions[members]


def reconstruct_network(model_path, bundle_path, test_path, batch_size: int,
                        threads: int = 1, phase_sync: bool = True, refine_iterations: int = 10,
                        tmp_dir=None, sync_method: str = "blocks",
                        sync_options: dict | None = None,
                        expected_arm: str | None = None,
                        shared_error_iterations: int = 0) -> Reconstruction:
    """Predict the test split with a trained arm and stitch the full (H, W) object.

    ``phase_sync``: synchronise the per-patch phase offsets before averaging (``PatchStore``;
    ``sync_method`` "blocks" or "global" and further ``sync_options``, see
    ``PatchStore.synchronise``);
    ``shared_error_iterations``: > 0 estimates the amplitude error every patch shares from the
    patches' disagreement and takes it off before the final average (``PatchStore.shared_error``);
    ``tmp_dir``: where the temporary patch file goes (system temporary directory by default);
    ``expected_arm``: the arm the caller reconstructs (a bundle of another arm is refused).

    Raises TrainingError when the bundle does not fit the model, the arm or the data (other N,
    other gridsize), or the model file is corrupt; DatasetError for unreadable data, NaN/inf or
    negative counts, or positions whose patch leaves the object.
    """
    from ptycho.models.runtime import configure_tensorflow, peak_gpu_mb

    t0 = time.perf_counter()
    bundle = read_bundle(bundle_path, expected_arm)
    arm, g, N = str(bundle["arm"]), int(bundle["gridsize"]), int(bundle["N"])
    if batch_size < 1:
        raise DatasetError(f"inference batch size must be >= 1, got {batch_size}")
    test_path = Path(test_path)
    with Dataset(test_path, require_object=False) as ds:
        if ds.N != N:
            raise TrainingError(f"{bundle_path}: model trained on N = {N} patterns, but {test_path} "
                                f"holds {ds.N} x {ds.N} patterns")
        if ds.n == 0:
            raise DatasetError(f"{test_path}: no diffraction patterns to reconstruct")
        ds.check_positions()
        count_statistics(ds, max(batch_size, 256))  # NaN, inf or negative counts: DatasetError
        if arm == "baseline" and g != 1:
            raise TrainingError(f"{bundle_path}: the baseline works on single patterns, bundle says "
                                f"gridsize {g}")
        configure_tensorflow(threads)
        model = load_model(model_path, bundle, bundle_path)
        predict = prediction_model(model, arm)
        learned = None
        if arm != "baseline":
            from ptycho.models.pinn import learned_probe

            learned = learned_probe(model)  # None unless trained with train_probe
        if not np.isclose(ds.dose, float(bundle["dose"]), rtol=1e-6):
            log.warning("%s: model trained at dose %g, test data at dose %g", test_path,
                        bundle["dose"], ds.dose)
        _, view = cell_labels(ds)
        table = prediction_table(bundle, ds, "test")
        k = ensemble_of(model, arm, table.C)
        C = table.C * k  # patches per group: its members, for every network
        store = PatchStore(ds.probe, ds.object_shape, len(table) * C, directory=tmp_dir,
                           batch=max(batch_size * C, 64))
        with store:
            t_loop = time.perf_counter()
            for patches, centres in predicted_patches(predict, ds, table, batch_size):
                store.add(patches, centres)
            t_predict = time.perf_counter() - t_loop
            sync_info = {"phase_sync": bool(phase_sync)}
            factors = None
            if phase_sync:
                t_sync = time.perf_counter()
                factors, details = store.synchronise(refine_iterations, method=sync_method,
                                                     **(sync_options or {}))
                sync_info.update(details, time_s=time.perf_counter() - t_sync)
            shared = None
            sync_info["shared_error_iterations"] = int(shared_error_iterations)
            if shared_error_iterations:
                t_shared = time.perf_counter()
                shared, details = store.shared_error(factors, shared_error_iterations)
                sync_info["shared_error"] = dict(details, time_s=time.perf_counter() - t_shared)
            obj, weight = store.stitch(factors, shared_error=shared)
            n_stitched = store.n
        t_loop = time.perf_counter() - t_loop
        wall = time.perf_counter() - t0
        info = {"model": str(model_path), "bundle": str(bundle_path), "batch_size": int(batch_size),
                "n_groups": len(table), "ensemble": k, "n_patches_stitched": n_stitched,
                "train_dose": float(bundle["dose"]), "epochs_run": bundle.get("epochs_run"),
                "stitch": "probe-intensity (|P|^2) weighted average", "synchronisation": sync_info,
                "predict_s": t_predict, "predict_stitch_s": t_loop, "peak_gpu_mb": peak_gpu_mb()}
        if learned is not None:
            info["train_probe"] = True  # the learned probe is the arm's refined probe
        log.info("%s: %d patches stitched from %s in %.1f s", arm, n_stitched, test_path.name, wall)
        return Reconstruction(object=obj.astype(np.complex64), weight=weight.astype(np.float32),
                              arm=arm, gridsize=g, dose=ds.dose,
                              overlap_view=str(bundle.get("overlap_view", view)), n_patterns=ds.n,
                              wall_time_s=wall, source=str(test_path), info=info,
                              probe=None if learned is None else learned[None])


def reconstruct_with_study(model_path, bundle_path, test_path, study, scale_name: str,
                           overlap_view: str, out_path, threads: int = 1, tmp_dir=None,
                           extra_time_s: float = 0.0, extra_info: dict | None = None,
                           expected_arm: str | None = None):
    """``reconstruct_network`` with the study's inference batch size and stitching settings, then
    ``write_reconstruction`` to ``out_path``; returns the ``Reconstruction``.

    ``extra_time_s`` is added to the reconstruction's wall time (the adapted arm's fine-tuning on
    the test scan is part of its reconstruction; the inference alone stays in
    ``info['inference_s']``), ``extra_info`` is merged into its ``info``; ``expected_arm``: the
    arm the caller reconstructs (a bundle of another arm is refused).
    """
    from ptycho.reconstruct.io import write_reconstruction

    scale = study.scale(scale_name)
    rec = reconstruct_network(model_path, bundle_path, test_path, scale.inference_batch_size,
                              threads=threads, phase_sync=study.stitching.phase_sync,
                              refine_iterations=study.stitching.refine_iterations,
                              sync_method=study.stitching.sync_method, tmp_dir=tmp_dir,
                              expected_arm=expected_arm,
                              shared_error_iterations=study.stitching.shared_error_iterations_at(
                                  scale.N))
    rec.overlap_view = overlap_view
    rec.info["inference_s"] = rec.wall_time_s
    rec.wall_time_s += float(extra_time_s)
    rec.info.update(extra_info or {})
    write_reconstruction(out_path, rec)
    return rec
