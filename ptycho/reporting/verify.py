"""Verification of a finished study: the report that says whether every number in it can be trusted.

``verify_study`` runs independent checks and returns
``{"study", "scale", "passed", "failed": [names], "checks": [{"name", "passed", "detail"}, ...],
"information": [{"name", "detail"}, ...]}``. Information entries never fail the run; they say
what a reader must see (``network_below_flat_object``: a network arm whose test reconstruction
scores below the flat object of its cell on a component).
A check that cannot run (a file is unreadable) fails with the reason; it never raises, so the
report is always written. ``assert_verified`` turns a failed report into a ``PtychoError``.
Every ``metrics.json`` is read once (:func:`ptycho.evaluation.record.read_metrics`) and the checks
get its record.

What the iterative check reads: the reconstruction ``info`` of every iterative cell (copied into
``metrics.json`` as ``recon_info``, else read from ``recon/iterative/{cell}.h5``) must say that the
solve started from a flat object -- ``"initial_object": "flat"`` (any string containing ``flat``,
or ``"constant"``/``"ones"``/``"uniform"``), or ``"flat_start": true`` -- and ran
``"iterations" >= 1``; when it records ``start_object_sha256``, that must be the hash of a
flat object (ones) on the test split's grid.

The hybrid check (``hybrid_network_start``) re-reads the network reconstruction each hybrid cell
names (``recon_info.start_source``): it must be the configured start arm's file for the same dose
and overlap under ``recon/<arm>/``, its filled object must hash to the recorded
``start_object_sha256``, and that hash must differ from the ground truth's and a flat object's.
The snapshot check (``snapshots_scored``) wants every solver arm scored at the study's snapshot
epochs, with increasing wall times and the last snapshot's metrics equal to the final object's.
``"iterations" >= 1``.

Replicates: ``grid_complete`` asks for every cell and arm; ``replicates_complete`` for every
replicate of every cell (its datasets, with the study's replicate attribute and the same scan
positions as the cell's other replicates, and one metrics file per arm); ``intervals_valid`` that
every metrics file holds finite intervals that contain their values, and a positive fluence.

Model-error levels (a study with ``errors``, docs/robustness.md): the checks above are those of the
exact cells, except that the split, overlap, loss and study checks cover every cell at every level
and ``files_exist_nonempty`` every file; ``error_cells_complete`` asks for every level x cell x
replicate x arm (metrics, rows, finite values, valid intervals) and for datasets that record their
level's error.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np

from ptycho.config import StudyConfig, dose_label, is_solver_arm, snapshot_epochs
from ptycho.errors import PtychoError
from ptycho.evaluation.record import MetricsRecord, read_metrics
from ptycho.reconstruct.io import object_sha256
from ptycho.reporting import required_metrics
from ptycho.reporting.inventory import check_inventory
from ptycho.reporting.records import read_history, read_metrics_csv
from ptycho.reporting.uncertainty import check_interval_record
from ptycho.reporting.verdict import below_floor, below_floor_ms_note, below_floor_text

MAX_LISTED = 25
OVERLAP_TOLERANCE = 0.05

# metric -> (lowest allowed, highest allowed, lowest is exclusive)
_RANGES = {
    "ssim": (-1.0, 1.0, False),
    "ms_ssim": (0.0, 1.0, False),
    "mae": (0.0, math.inf, False),
    "mse": (0.0, math.inf, False),
    "nce": (0.0, math.inf, False),
    "frc50_px": (0.0, math.inf, True),
    "frc17_px": (0.0, math.inf, True),
    "psnr_data_range": (0.0, math.inf, True),
    "poisson_deviance": (0.0, math.inf, False),
    "frc50_px_halves": (0.0, math.inf, True),
    "frc17_px_halves": (0.0, math.inf, True),
}


def _listing(items, what: str) -> str:
    items = list(items)
    shown = "; ".join(str(i) for i in items[:MAX_LISTED])
    more = f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {what}: {shown}{more}"


# ----------------------------------------------------------------------------------- checks
def check_grid_complete(study: StudyConfig, rows) -> tuple[bool, str]:
    have: dict[tuple, set] = {}
    seen: set[tuple] = set()
    dups, wrong_g, bad = [], [], []
    for r in rows:
        try:
            key = (dose_label(r["dose"]), r["overlap"], r["arm"])
        except PtychoError as exc:
            bad.append(str(exc))
            continue
        qm = (r["quantity"], r["metric"])
        got = have.setdefault(key, set())
        rep = int(r.get("replicate", 0))
        if (key, rep, qm) in seen:
            dups.append(f"{key[0]}_{key[1]}/{key[2]} r{rep} {qm[0]}.{qm[1]}")
        seen.add((key, rep, qm))
        got.add(qm)
        try:
            if int(r["gridsize"]) != study.identity(r["arm"]).gridsize:
                wrong_g.append(f"{key[0]}_{key[1]}/{key[2]} gridsize {r['gridsize']}")
        except PtychoError:
            pass
    grid = [(d, ov, a) for d in study.dose_labels for ov in study.overlaps for a in study.arm_ids]
    required = required_metrics(study.data.ground_truth)
    missing = []
    for d, ov, a in grid:
        got = have.get((d, ov, a))
        if not got:
            missing.append(f"{d}_{ov}/{a} (no rows)")
            continue
        lack = [f"{q}.{m}" for q, ms in required.items() for m in ms if (q, m) not in got]
        if lack:
            missing.append(f"{d}_{ov}/{a} (missing {', '.join(lack)})")
    unexpected = sorted(f"{d}_{ov}/{a}" for d, ov, a in set(have) - set(grid))
    problems = []
    if missing:
        problems.append(_listing(missing, "incomplete cell/arm"))
    if unexpected:
        problems.append(_listing(unexpected, "cell/arm not in the study"))
    if dups:
        problems.append(_listing(sorted(set(dups)), "duplicated rows"))
    if wrong_g:
        problems.append(_listing(sorted(set(wrong_g)), "rows with the wrong gridsize"))
    if bad:
        problems.append(_listing(bad, "unreadable doses"))
    if problems:
        return False, " | ".join(problems)
    return True, (f"{len(study.dose_labels)} doses x {len(study.overlaps)} overlaps x "
                  f"{len(study.arm_ids)} arms ({', '.join(study.arm_ids)}) complete, "
                  f"{len(rows)} rows")


def check_metric_values(rows) -> tuple[bool, str]:
    if not rows:
        return False, "the metrics table has no rows"
    bad = []
    for r in rows:
        v, m = r["value"], r["metric"]
        rep = int(r.get("replicate", 0))
        where = (f"{dose_label(r['dose'])}_{r['overlap']}/{r['arm']}{f' r{rep}' if rep else ''} "
                 f"{r['quantity']}.{m} = {v!r}")
        if not math.isfinite(v):
            bad.append(f"{where} (not finite)")
            continue
        if m in _RANGES:
            lo, hi, excl = _RANGES[m]
            if v > hi or v < lo or (excl and v == lo):
                op = ">" if excl else ">="
                rng = f"{op} {lo}" if hi == math.inf else f"in [{lo}, {hi}]"
                bad.append(f"{where} (expected {rng})")
    if bad:
        return False, _listing(bad, "bad values")
    return True, f"{len(rows)} values finite and in range"


def check_region_nonempty(records) -> tuple[bool, str]:
    bad = []
    for m in records:
        n = m.region_pixels
        if not isinstance(n, (int, float)) or not n > 0:
            bad.append(f"{m.path} (region_pixels = {n!r})")
    if bad:
        return False, _listing(bad, "evaluations without a scored region")
    return True, f"{len(records)} evaluations scored a non-empty region"


def check_files(expected_files) -> tuple[bool, str]:
    missing, empty = [], []
    for f in expected_files:
        p = Path(f)
        if not p.is_file():
            missing.append(str(f))
        elif p.stat().st_size == 0:
            empty.append(str(f))
    problems = []
    if missing:
        problems.append(_listing(missing, "missing files"))
    if empty:
        problems.append(_listing(empty, "empty files"))
    if problems:
        return False, " | ".join(problems)
    return True, f"{len(expected_files)} expected files exist and are non-empty"


def _open_pair(train, test):
    from ptycho.data.dataset import Dataset

    return Dataset(train, require_object=False), Dataset(test, require_object=False)


def check_split(dataset_pairs) -> tuple[bool, str]:
    from ptycho.data.split import shared_pixels

    if not dataset_pairs:
        return False, "no dataset pairs given"
    bad = []
    for train, test in dataset_pairs:
        tr, te = _open_pair(train, test)
        try:
            if tr.split != "train" or te.split != "test":
                bad.append(f"{train}, {test}: split attributes {tr.split!r}, {te.split!r}")
                continue
            if tr.object_shape != te.object_shape or tr.N != te.N:
                bad.append(f"{train}, {test}: object {tr.object_shape} vs {te.object_shape}, "
                           f"N {tr.N} vs {te.N}")
                continue
            # the positions that made the data (the nominal ones of a cell with position
            # errors are jittered across the split line; the split is that of the true scan)
            n = shared_pixels(te.object_shape, tr.true_positions, te.true_positions, te.N)
            if n:
                bad.append(f"{test}: {n} object pixels covered by both train and test patches")
        finally:
            tr.close()
            te.close()
    if bad:
        return False, _listing(bad, "leaking splits")
    return True, f"{len(dataset_pairs)} dataset pairs share no object pixel (full N x N patches)"


def check_overlap(dataset_pairs, tol: float = OVERLAP_TOLERANCE) -> tuple[bool, str]:
    from ptycho.data.dataset import Dataset

    if not dataset_pairs:
        return False, "no dataset pairs given"
    bad, worst = [], 0.0
    for pair in dataset_pairs:
        for path in pair:
            with Dataset(path, require_object=False) as ds:
                a = ds.attrs
            t, m = float(a["overlap_target"]), float(a["overlap_measured"])
            dev = abs(m - t)
            worst = max(worst, dev)
            if not dev <= tol:
                bad.append(f"{path}: measured f = {m:.3f}, target {t:.3f}")
    if bad:
        return False, _listing(bad, f"datasets off target by more than {tol}")
    return True, f"{2 * len(dataset_pairs)} datasets within {tol} of the target f (worst {worst:.3f})"


def check_loss_fell(histories, study: StudyConfig | None = None) -> tuple[bool, str]:
    trained = [a.name for a in (study.identities if study else []) if a.is_network]
    if not histories:
        if trained:
            return False, f"no training histories given although the study trains {trained}"
        return True, "the study trains no model"
    bad = []
    for p in histories:
        ok, why = _loss_fell(Path(p))
        if not ok:
            bad.append(f"{p}: {why}")
    if bad:
        return False, _listing(bad, "models whose loss did not fall")
    return True, (f"{len(histories)} trained models: the best validation loss is below the loss "
                  f"before training (or, without a bundle, the first epoch's)")


def _loss_fell(path: Path) -> tuple[bool, str]:
    """Did one model's loss fall? Compares the validation loss (measured after each epoch on the
    same held-out items; the training loss is a running mean over batches while the weights
    change) with the validation loss before training (``initial_loss`` in the ``bundle.json``
    beside the history), or, without a bundle, with the first epoch's."""
    h = read_history(path)
    key = "val_loss" if h.get("val_loss") and all(math.isfinite(v) for v in h["val_loss"]) else "loss"
    order = sorted(range(len(h[key])), key=lambda i: h["epoch"][i])
    loss = [h[key][i] for i in order]
    if not loss:
        return False, "no epochs"
    if not all(math.isfinite(v) for v in loss):
        return False, f"non-finite {key}"
    start, what = None, "before training"
    bundle = path.parent / "bundle.json"
    info = {}
    if bundle.is_file():
        try:
            info = json.loads(bundle.read_text())
        except json.JSONDecodeError:
            info = {}
    if isinstance(info, dict) and "adaptation" in info:
        # an adapted PINN has no held-out data: its loss on a fixed subset of the scan it adapts
        # to, before and after the adaptation (which keeps its best epoch: never worse)
        try:
            a, b = float(info["initial_loss"]), float(info["final_loss"])
        except (KeyError, TypeError, ValueError):
            return False, "adapted bundle without initial_loss/final_loss"
        if b <= a:
            return True, ""
        return False, f"loss on the adaptation check subset {a:.6g} -> {b:.6g} (rose)"
    if key == "val_loss" and isinstance(info, dict):
        try:
            start = float(info.get("initial_loss"))
        except (ValueError, TypeError):
            start = None
    if start is None or not math.isfinite(start):
        if len(loss) < 2:
            return False, "one epoch and no loss before training: cannot tell whether it fell"
        start, loss, what = loss[0], loss[1:], "after the first epoch"
    if min(loss) < start:
        return True, ""
    return False, f"{key} {what} {start:.6g}, best {min(loss):.6g} (did not fall)"


_FLAT_WORDS = ("constant", "ones", "uniform")


def _is_flat_start(info: dict) -> bool:
    if info.get("flat_start") is True:
        return True
    for k in ("initial_object", "object_init", "init", "initialization", "initialisation",
              "initial_guess", "start"):
        v = info.get(k)
        if isinstance(v, str):
            v = v.lower()
            return "flat" in v or v in _FLAT_WORDS
    return False


def _iterations(info: dict):
    for k in ("iterations", "n_iterations", "num_iterations", "epochs", "num_epochs"):
        if k in info:
            return info[k]
    return None


def check_iterative(study: StudyConfig, records, root) -> tuple[bool, str]:
    if "iterative" not in study.arm_ids:
        return True, "the study has no iterative arm"
    seen, bad = 0, []
    for m in records:
        if m.arm != "iterative":
            continue
        seen += 1
        info = m.recon_info or {}
        cell = f"{dose_label(m.dose)}_{m.overlap_view}_r{int(m.replicate)}"
        if not info:
            rec_path = Path(root) / "recon" / "iterative" / f"{cell}.h5"
            if rec_path.is_file():
                from ptycho.reconstruct.io import read_reconstruction

                info = read_reconstruction(rec_path).info
        it = _iterations(info)
        problems = []
        if not _is_flat_start(info):
            problems.append("no flat-object start recorded (info keys: "
                            f"{sorted(info) if info else 'none'})")
        elif "start_object_sha256" in info:
            flat = object_sha256(np.ones(_test_grid(m), np.complex64))
            if info["start_object_sha256"] != flat:
                problems.append("the recorded start object is not a flat object (sha256 "
                                f"{str(info['start_object_sha256'])[:12]}..., flat {flat[:12]}...)")
        if not isinstance(it, (int, float)) or not it >= 1:
            problems.append(f"iterations = {it!r}")
        if problems:
            bad.append(f"{cell}: {', '.join(problems)}")
    if not seen:
        return False, "the study has an iterative arm but no iterative metrics were given"
    if bad:
        return False, _listing(bad, "iterative reconstructions not shown to start flat")
    return True, f"{seen} iterative reconstructions started from a flat object with >= 1 iteration"


def _test_grid(m: MetricsRecord) -> tuple[int, int]:
    """The object grid (H, W) of the test split a metrics record was scored on."""
    from ptycho.data.dataset import Dataset

    if not m.test_path:
        raise PtychoError(f"metrics of {m.arm} {m.dose:g} {m.overlap_view} do not name "
                          "their test split ('test_path')")
    with Dataset(m.test_path, require_object=False) as ds:
        return tuple(int(v) for v in ds.object_shape)


def _hybrid_problems(study: StudyConfig, m: MetricsRecord, root) -> list[str]:
    from ptycho.data.dataset import Dataset
    from ptycho.reconstruct.io import fill_unlit, read_reconstruction

    info = m.recon_info or {}
    start_arm, source, sha = (info.get("start_arm"), info.get("start_source"),
                              info.get("start_object_sha256"))
    if not (start_arm and source and sha):
        return [(f"no network start recorded (start_arm {start_arm!r}, start_source "
                 f"{source!r}, start_object_sha256 {sha!r})")]
    problems = []
    if start_arm != study.hybrid.start_from:
        problems.append(f"started from {start_arm}, the study says {study.hybrid.start_from}")
    src = Path(source).resolve()
    if src.parent != (Path(root) / "recon" / start_arm).resolve():
        problems.append(f"start file {source} is not in this study's recon/{start_arm}/")
    net = read_reconstruction(source)
    if net.arm != start_arm or dose_label(net.dose) != dose_label(m.dose) \
            or net.overlap_view != m.overlap_view:
        problems.append(f"start file {source} holds {net.arm} {net.dose:g} {net.overlap_view}, "
                        f"not {start_arm} {m.dose:g} {m.overlap_view}")
    if object_sha256(fill_unlit(net.object, net.weight)) != sha:
        problems.append(f"the recorded start object is not {source}'s reconstruction")
    with Dataset(m.test_path) as ds:
        truth = ds.object
    if sha in (object_sha256(truth), object_sha256(fill_unlit(truth, net.weight))):
        problems.append("the start object is the ground truth")
    if sha == object_sha256(np.ones(truth.shape, np.complex64)):
        problems.append("the start object is flat")
    t_net = info.get("start_wall_time_s")
    if t_net != net.wall_time_s or not float(m.recon_wall_time_s or 0) >= net.wall_time_s:
        problems.append(f"wall time {m.recon_wall_time_s} s does not include the network's "
                        f"{net.wall_time_s} s (recorded {t_net})")
    return problems


def _arm_problems(records, keep, problems_of) -> tuple[int, list[str]]:
    """(how many metrics records have an arm that passes ``keep``, one '<cell>/<arm>: problems'
    line for each whose ``problems_of(record)`` is not empty)."""
    found = [m for m in records if keep(m.arm)]
    bad = []
    for m in found:
        problems = problems_of(m)
        if problems:
            bad.append(f"{dose_label(m.dose)}_{m.overlap_view}/{m.arm}: " + "; ".join(problems))
    return len(found), bad


def check_hybrid(study: StudyConfig, records, root) -> tuple[bool, str]:
    if "hybrid" not in study.arm_ids:
        return True, "the study has no hybrid arm"
    seen, bad = _arm_problems(records, lambda a: a == "hybrid",
                              lambda m: _hybrid_problems(study, m, root))
    if not seen:
        return False, "the study has a hybrid arm but no hybrid metrics were given"
    if bad:
        return False, _listing(bad, "hybrid reconstructions not shown to start from their network")
    return True, (f"{seen} hybrid reconstructions started from {study.hybrid.start_from}'s "
                  "reconstruction (sha256 re-checked), not from the ground truth or a flat object")


def _snapshot_problems(m: MetricsRecord, want: list[int]) -> list[str]:
    snaps = m.snapshots or []
    epochs = [s.get("epoch") for s in snaps]
    times = [float(s.get("wall_time_s", math.nan)) for s in snaps]
    if epochs != want:
        return [f"snapshot epochs {epochs}, expected {want}"]
    if not all(b > a for a, b in itertools.pairwise(times)):
        return [f"snapshot wall times {times} do not increase"]
    if snaps[-1].get("metrics") != m.metrics:
        return ["the last snapshot's metrics differ from the final object's"]
    return []


def check_snapshots(study: StudyConfig, scale: str, records) -> tuple[bool, str]:
    solvers = [a for a in study.arm_ids if is_solver_arm(a)]
    if not solvers:
        return True, "the study has no solver arm"
    if not study.data.ground_truth:
        return True, "no ground truth: the snapshots have no SSIM to score (not checked)"
    cfg = study.scale(scale).iterative
    want = list(snapshot_epochs(cfg.iterations, cfg.snapshots))
    # variants of the iterative arm: their own iterative block (the scale's, their settings on it)
    variants = {v.name: list(snapshot_epochs(v.iterative[scale].iterations,
                                             v.iterative[scale].snapshots))
                for v in study.variants if scale in v.iterative}
    seen, bad = _arm_problems(records, lambda a: is_solver_arm(a) or a in variants,
                              lambda m: _snapshot_problems(m, variants.get(m.arm, want)))
    if not seen:
        return False, f"the study has {solvers} but no solver-arm metrics were given"
    if bad:
        return False, _listing(bad, "solver reconstructions without consistent snapshots")
    at = f"epochs {want}" + "".join(f", {a} at {w}" for a, w in variants.items())
    return True, (f"{seen} solver reconstructions scored at {at}; each last snapshot "
                  "equals its final object's metrics")


def check_replicates(study: StudyConfig, scale: str, dataset_pairs, records
                     ) -> tuple[bool, str]:
    """Every replicate 0 .. R - 1 of every cell has its dataset pair (replicate attribute set,
    the scan positions of the cell's other replicates) and a metrics record for every arm
    (``records``: those of the metrics files that exist; a missing file is a missing arm)."""
    from ptycho.data.dataset import Dataset

    R = study.scale(scale).replicates
    want = {(d, ov, k) for d in study.dose_labels for ov in study.overlaps for k in range(R)}
    data, positions, bad = {}, {}, []
    for pair in dataset_pairs:
        for path in pair:
            with Dataset(path, require_object=False) as ds:
                key = (dose_label(ds.dose), str(ds.config.get("overlap_view")), ds.replicate)
                split, pos = ds.split, ds.positions
            data.setdefault(key, set()).add(split)
            ref = positions.setdefault((key[1], split), pos)
            if ref.shape != pos.shape or not np.array_equal(ref, pos):
                bad.append(f"{path}: scan positions differ from the other replicates of "
                           f"{key[1]} ({split})")
    missing = [f"{d}_{ov}_r{k} (datasets)" for d, ov, k in sorted(want)
               if data.get((d, ov, k)) != {"train", "test"}]
    have: dict[tuple, set] = {}
    for m in records:
        key = (dose_label(m.dose), str(m.overlap_view), int(m.replicate))
        have.setdefault(key, set()).add(str(m.arm))
    for d, ov, k in sorted(want):
        lack = [a for a in study.arm_ids if a not in have.get((d, ov, k), set())]
        if lack:
            missing.append(f"{d}_{ov}_r{k} (no metrics for {', '.join(lack)})")
    extra = sorted(f"{d}_{ov}_r{k}" for d, ov, k in set(have) | set(data) if k >= R)
    problems = []
    if missing:
        problems.append(_listing(missing, "missing cell replicates"))
    if extra:
        problems.append(_listing(extra, f"replicates beyond the study's {R}"))
    if bad:
        problems.append(_listing(bad, "replicates with other scan positions"))
    if problems:
        return False, " | ".join(problems)
    return True, (f"{R} replicate(s) of {len(study.dose_labels) * len(study.overlaps)} cells: "
                  f"datasets (shared scan positions) and metrics of {len(study.arm_ids)} arms")


def check_intervals(records) -> tuple[bool, str]:
    """Every metrics record: finite intervals that contain their values, and a positive fluence.
    An evaluation without ground truth has no bootstrap intervals (its metrics, the data residual
    and the half-scan FRC, are global); it needs its fluence only."""
    bad, free = [], 0
    for m in records:
        if m.ground_truth:
            bad += check_interval_record(m, str(m.path))
            continue
        free += 1
        bad += [x for x in check_interval_record(dataclasses.replace(m, intervals={}), str(m.path))
                if "fluence" in x]
    if not records:
        return False, "no metrics files given"
    if bad:
        return False, _listing(bad, "bad intervals")
    note = (f" ({free} evaluations without ground truth: fluence only, no bootstrap intervals)"
            if free else "")
    return True, (f"{len(records)} metrics files: every interval is finite and contains its "
                  f"value; fluence recorded{note}")


def check_ground_truth(study: StudyConfig, records) -> tuple[bool, str]:
    """Every evaluation used the ground truth exactly when the study has one (``ground_truth`` in
    ``metrics.json``; files written before the key existed count as with ground truth); the
    detail names the ground-truth-free metrics."""
    from ptycho.evaluation.evaluate import GROUND_TRUTH_FREE

    want = study.data.ground_truth
    bad = []
    for m in records:
        got = bool(m.ground_truth)
        if got != want:
            bad.append(f"{m.path}: evaluated {'with' if got else 'without'} ground truth")
    if bad:
        return False, _listing(bad, f"evaluations that contradict data/ground_truth: {want}")
    free = ", ".join(GROUND_TRUTH_FREE)
    if want:
        return True, (f"{len(records)} evaluations against the ground truth; "
                      f"ground-truth-free metrics also reported: data.poisson_deviance")
    return True, (f"{len(records)} evaluations without ground truth (external data): only "
                  f"ground-truth-free metrics are reported: {free}")


def check_inventory_disk(inventory_path, root) -> tuple[bool, str]:
    from ptycho.reporting.inventory import read_inventory

    problems = check_inventory(inventory_path, root)
    if problems:
        return False, _listing(problems, "inventory mismatches")
    from ptycho.reporting.inventory import read_refined

    refined = read_refined(inventory_path)
    text = f"{len(read_inventory(inventory_path))} files match the inventory (size and sha256)"
    if refined:  # an arm refined its probe or positions: their arrays' hashes were checked too
        text += (f"; {len(refined)} refined probe/position arrays match their sha256 in the "
                 "inventory")
    return True, text


def check_no_partial_files(root) -> tuple[bool, str]:
    """No ``atomic_path`` temporary under the results: one is a killed writer's leftover."""
    import os

    from ptycho.data.io import is_partial

    found = sorted(Path(d, n).relative_to(root).as_posix()
                   for d, _, names in os.walk(root) for n in names if is_partial(n))
    if found:
        return False, _listing(found, "leftover temporary files of interrupted writers "
                                      "(a rerun of the workflow removes them)")
    return True, "no leftover temporary files under the results"


def check_study_matches(study: StudyConfig, scale: str, dataset_pairs, rows) -> tuple[bool, str]:
    from ptycho.data.dataset import Dataset

    bad = []
    for pair in dataset_pairs:
        for path in pair:
            with Dataset(path, require_object=False) as ds:
                cfg = ds.config
                dose = ds.dose
                f_t = float(ds.attrs["overlap_target"])
            name = (cfg.get("study") or {}).get("study") if isinstance(cfg.get("study"), dict) \
                else cfg.get("study")
            if name != study.study:
                bad.append(f"{path}: made for study {name!r}, not {study.study!r}")
            if cfg.get("scale") not in (None, scale):
                bad.append(f"{path}: made at scale {cfg.get('scale')!r}, not {scale!r}")
            if dose_label(dose) not in study.dose_labels:
                bad.append(f"{path}: dose {dose:g} is not in the study")
            view = cfg.get("overlap_view")
            if view is not None and (view not in study.overlaps
                                     or abs(study.overlaps[view] - f_t) > 1e-9):
                bad.append(f"{path}: overlap view {view!r} target {f_t} does not match the study")
    for r in rows:
        if r["study"] != study.study or r["scale"] != scale:
            bad.append(f"metrics table row for study {r['study']!r} scale {r['scale']!r}")
            break
    if bad:
        return False, _listing(bad, "results not made by this study")
    return True, (f"{2 * len(dataset_pairs)} datasets and the metrics table name study "
                  f"{study.study!r} at scale {scale!r}")


def check_error_cells(study: StudyConfig, scale: str, dataset_pairs, rows, records
                      ) -> tuple[bool, str]:
    """The cells at model-error levels (docs/robustness.md): every level x cell x replicate x arm
    has its metrics (with its level's ``model_errors`` block) and rows in the metrics table, whose
    values are finite and in range and whose intervals are valid; every dataset records the level
    it was made at and a data error of that level (a probe error within 2% of the requested one, a
    position error > 0)."""
    from ptycho.data.dataset import Dataset
    from ptycho.reporting.records import record_level

    levels = {lv.label: lv for lv in (study.errors.levels() if study.errors else ())}
    R = study.scale(scale).replicates
    want = {(lv, d, ov, k, a) for lv in levels for d in study.dose_labels
            for ov in study.overlaps for k in range(R) for a in study.arm_ids}
    have = {(record_level(m), dose_label(m.dose), str(m.overlap_view), int(m.replicate),
             str(m.arm)) for m in records}
    problems = []
    missing = sorted(want - have)
    if missing:
        problems.append(_listing([f"{d}_{ov}_{lv}_r{k}/{a}" for lv, d, ov, k, a in missing],
                                 "error-level cell/arm without metrics"))
    extra = sorted(have - want)
    if extra:
        problems.append(_listing([f"{d}_{ov}_{lv}_r{k}/{a}" for lv, d, ov, k, a in extra],
                                 "metrics of an error level or cell not in the study"))
    row_cells = {(r["error_level"], dose_label(r["dose"]), r["overlap"], int(r["replicate"]),
                  r["arm"]) for r in rows}
    lacking = sorted(want - row_cells)
    if lacking:
        problems.append(_listing([f"{d}_{ov}_{lv}_r{k}/{a}" for lv, d, ov, k, a in lacking],
                                 "error-level cell/arm without rows in the metrics table"))
    bad = []
    for pair in dataset_pairs:
        for path in pair:
            with Dataset(path, require_object=False) as ds:
                errs = ds.errors
                pe = ds.attrs.get("probe_error")
                pr = ds.attrs.get("position_rms_error_px")
            lv = levels.get((errs or {}).get("label"))
            if lv is None:
                bad.append(f"{path}: no error level of the study recorded "
                           f"({(errs or {}).get('label')!r})")
                continue
            if lv.kind == "probe" and not (pe is not None
                                           and abs(float(pe) - lv.probe_error)
                                           <= 0.02 * lv.probe_error):
                bad.append(f"{path}: probe error {pe} for level {lv.label}")
            if lv.kind == "positions" and not (pr is not None and float(pr) > 0):
                bad.append(f"{path}: position error {pr} px for level {lv.label}")
    if bad:
        problems.append(_listing(bad, "datasets without their level's error"))
    ok_values, detail = check_metric_values(rows) if rows else (False, "no rows")
    if not ok_values:
        problems.append(f"error-level rows: {detail}")
    ok_iv, detail_iv = check_intervals(records)
    if not ok_iv:
        problems.append(f"error-level metrics: {detail_iv}")
    if problems:
        return False, " | ".join(problems)
    return True, (f"{len(levels)} error level(s) ({', '.join(levels)}) x "
                  f"{len(study.dose_labels) * len(study.overlaps)} cells x {R} replicate(s) x "
                  f"{len(study.arm_ids)} arms complete; {2 * len(dataset_pairs)} datasets record "
                  "their level's error")


# ----------------------------------------------------------------------------------- driver
class _MetricsFiles:
    """The metrics files of a verification, each read once (:func:`read_metrics`).

    ``every()``: the records of every file, in order; a file that could not be read raises its
    error, so a check that needs it cannot run and says why. ``present()``: the records of the
    files that exist (a missing file is what ``replicates_complete`` reports); a file that exists
    but cannot be read raises its error."""

    def __init__(self, paths: list[str]):
        self.entries: list[tuple[str, MetricsRecord | Exception]] = []
        for p in paths:
            try:
                self.entries.append((p, read_metrics(p)))
            except Exception as exc:  # noqa: BLE001 - raised again by the checks that need it
                self.entries.append((p, exc))

    def every(self) -> list[MetricsRecord]:
        return [self._record(r) for _, r in self.entries]

    def present(self) -> list[MetricsRecord]:
        return [self._record(r) for p, r in self.entries
                if not (isinstance(r, Exception) and not Path(p).is_file())]

    @staticmethod
    def _record(r):
        if isinstance(r, Exception):
            raise r
        return r


def verify_study(study_dict: dict, scale: str, root, expected_files, dataset_pairs, histories,
                 metrics_csv, metric_paths, inventory_path,
                 overlap_tolerance: float = OVERLAP_TOLERANCE, error_dataset_pairs=(),
                 error_histories=(), error_metric_paths=()) -> dict:
    """Run every check and return the verification report (see the module docstring).

    ``error_*``: the cells at model-error levels (a study with an errors section): their datasets
    join the split, overlap and study checks, their histories the loss check, and
    ``error_cells_complete`` checks their metrics; the other checks are those of the exact
    cells."""
    expected_files = [str(p) for p in expected_files]
    dataset_pairs = [(str(a), str(b)) for a, b in dataset_pairs]
    error_pairs = [(str(a), str(b)) for a, b in error_dataset_pairs]
    all_pairs = dataset_pairs + error_pairs
    histories = [str(p) for p in histories] + [str(p) for p in error_histories]
    metrics = _MetricsFiles([str(p) for p in metric_paths])
    checks = []

    def run(name, fn, *args):
        try:
            ok, detail = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run fails, with the reason
            ok, detail = False, f"could not run: {type(exc).__name__}: {exc}"
        checks.append({"name": name, "passed": bool(ok), "detail": detail})

    study = None
    try:
        study = StudyConfig.from_dict(study_dict)
    except PtychoError as exc:
        checks.append({"name": "study_config_valid", "passed": False, "detail": str(exc)})
    rows = None
    try:
        rows = read_metrics_csv(metrics_csv)
    except PtychoError as exc:
        checks.append({"name": "metrics_table_readable", "passed": False, "detail": str(exc)})

    def need(*things):
        if any(t is None for t in things):
            raise PtychoError("skipped: the study config or the metrics table could not be read")

    run("grid_complete", lambda: (need(study, rows), check_grid_complete(study, rows))[1])
    run("metrics_finite_and_in_range", lambda: (need(rows), check_metric_values(rows))[1])
    run("evaluation_region_nonempty", lambda: check_region_nonempty(metrics.every()))
    run("files_exist_nonempty", check_files, expected_files)
    run("split_invariant", check_split, all_pairs)
    run("overlap_on_target", check_overlap, all_pairs, overlap_tolerance)
    run("loss_fell", check_loss_fell, histories, study)
    run("iterative_flat_start",
        lambda: (need(study), check_iterative(study, metrics.every(), root))[1])
    run("hybrid_network_start", lambda: (need(study), check_hybrid(study, metrics.every(), root))[1])
    run("snapshots_scored",
        lambda: (need(study), check_snapshots(study, scale, metrics.every()))[1])
    run("replicates_complete",
        lambda: (need(study), check_replicates(study, scale, dataset_pairs,
                                               metrics.present()))[1])
    run("intervals_valid", lambda: check_intervals(metrics.every()))
    run("inventory_matches_disk", check_inventory_disk, inventory_path, root)
    run("no_leftover_temporaries", check_no_partial_files, root)
    run("ground_truth_metrics",
        lambda: (need(study), check_ground_truth(study, metrics.every()))[1])
    run("study_matches_results",
        lambda: (need(study, rows), check_study_matches(study, scale, all_pairs, rows))[1])
    if error_pairs or error_metric_paths:
        error_metrics = _MetricsFiles([str(p) for p in error_metric_paths])

        def _error_rows():
            from ptycho.reporting.records import EXACT_LEVEL

            return [r for r in read_metrics_csv(metrics_csv, levels=True)
                    if r["error_level"] != EXACT_LEVEL]

        run("error_cells_complete",
            lambda: (need(study, rows), check_error_cells(study, scale, error_pairs, _error_rows(),
                                                          error_metrics.present()))[1])
    failed = [c["name"] for c in checks if not c["passed"]]
    information = []
    try:
        low = _below_floor(rows, metrics.present()) if rows else []
    except Exception as exc:  # noqa: BLE001 - information only: never stops the report
        low = []
        information.append({"name": "network_below_flat_object",
                            "detail": f"could not be computed: {type(exc).__name__}: {exc}"})
    if low:
        information.append({"name": "network_below_flat_object", "detail": (
            f"{len(low)} network result(s) score below the flat object of their cell (valid "
            f"measurements, shown for the reader): {below_floor_text(low)}"
            + (f". {note}" if (note := below_floor_ms_note(low)) else ""))})
    return {
        "study": study.study if study else study_dict.get("study"),
        "scale": scale,
        "root": str(root),
        "passed": not failed,
        "failed": failed,
        "checks": checks,
        "information": information,
    }


def _below_floor(rows, records) -> list[dict]:
    """Network arms whose SSIM is below the flat object's in their cell and component."""
    from ptycho.reporting.records import collect_references

    return below_floor(rows, collect_references(r for r in records if r is not None))


def assert_verified(report_path) -> None:
    """Raise ``PtychoError`` naming every failed check (and its detail) of a verification report."""
    from ptycho.data.io import read_json

    path = Path(report_path)
    report = read_json(path, "verification report")
    checks = report.get("checks") or []
    failed = [c for c in checks if not c.get("passed")]
    if report.get("passed") is True and not failed and checks:
        return
    if not checks:
        raise PtychoError(f"{path}: the report holds no checks")
    parts = []
    for c in failed:
        detail = str(c.get("detail", ""))
        if len(detail) > 600:
            detail = detail[:600] + " ..."
        parts.append(f"{c.get('name')}: {detail}")
    raise PtychoError(
        f"{path}: verification of study {report.get('study')!r} ({report.get('scale')} scale) failed "
        f"{len(failed)} of {len(checks)} checks -- " + " || ".join(parts)
    )


__all__ = ["assert_verified", "verify_study"]
