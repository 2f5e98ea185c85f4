"""Verification of a finished study: the report that says whether every number in it can be trusted.

``verify_study`` runs independent checks and returns
``{"study", "scale", "passed", "failed": [names], "checks": [{"name", "passed", "detail"}, ...]}``.
A check that cannot run (a file is unreadable) fails with the reason; it never raises, so the
report is always written. ``assert_verified`` turns a failed report into a ``PtychoError``.

What the iterative check reads: the reconstruction ``info`` of every iterative cell (copied into
``metrics.json`` as ``recon_info``, else read from ``recon/iterative/{cell}.h5``) must say that the
solve started from a flat object -- ``"initial_object": "flat"`` (any string containing ``flat``,
or ``"constant"``/``"ones"``/``"uniform"``), or ``"flat_start": true`` -- and ran
``"iterations" >= 1``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ptycho.config import StudyConfig, arm_gridsize, dose_label
from ptycho.errors import PtychoError
from ptycho.reporting import required_metrics
from ptycho.reporting.inventory import check_inventory
from ptycho.reporting.tables import read_history, read_metrics_csv, read_metrics_json

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
    dups, wrong_g, bad = [], [], []
    for r in rows:
        try:
            key = (dose_label(r["dose"]), r["overlap"], r["arm"])
        except PtychoError as exc:
            bad.append(str(exc))
            continue
        qm = (r["quantity"], r["metric"])
        got = have.setdefault(key, set())
        if qm in got:
            dups.append(f"{key[0]}_{key[1]}/{key[2]} {qm[0]}.{qm[1]}")
        got.add(qm)
        try:
            if int(r["gridsize"]) != arm_gridsize(r["arm"]):
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
        where = f"{dose_label(r['dose'])}_{r['overlap']}/{r['arm']} {r['quantity']}.{m} = {v!r}"
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


def check_region_nonempty(metric_paths) -> tuple[bool, str]:
    bad = []
    for p in metric_paths:
        m = read_metrics_json(p)
        n = m.get("region_pixels")
        if not isinstance(n, (int, float)) or not n > 0:
            bad.append(f"{p} (region_pixels = {n!r})")
    if bad:
        return False, _listing(bad, "evaluations without a scored region")
    return True, f"{len(metric_paths)} evaluations scored a non-empty region"


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
            n = shared_pixels(te.object_shape, tr.positions, te.positions, te.N)
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
    trained = [a for a in (study.arm_ids if study else []) if a != "iterative"]
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


def check_iterative(study: StudyConfig, metric_paths, root) -> tuple[bool, str]:
    if "iterative" not in study.arm_ids:
        return True, "the study has no iterative arm"
    seen, bad = 0, []
    for p in metric_paths:
        m = read_metrics_json(p)
        if m["arm"] != "iterative":
            continue
        seen += 1
        info = m.get("recon_info") or {}
        cell = f"{dose_label(m['dose'])}_{m['overlap_view']}"
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
        if not isinstance(it, (int, float)) or not it >= 1:
            problems.append(f"iterations = {it!r}")
        if problems:
            bad.append(f"{cell}: {', '.join(problems)}")
    if not seen:
        return False, "the study has an iterative arm but no iterative metrics were given"
    if bad:
        return False, _listing(bad, "iterative reconstructions not shown to start flat")
    return True, f"{seen} iterative reconstructions started from a flat object with >= 1 iteration"


def check_ground_truth(study: StudyConfig, metric_paths) -> tuple[bool, str]:
    """Every evaluation used the ground truth exactly when the study has one (``ground_truth`` in
    ``metrics.json``; files written before the key existed count as with ground truth); the
    detail names the ground-truth-free metrics."""
    from ptycho.evaluation.evaluate import GROUND_TRUTH_FREE

    want = study.data.ground_truth
    bad = []
    for p in metric_paths:
        m = read_metrics_json(p)
        got = bool(m.get("ground_truth", True))
        if got != want:
            bad.append(f"{p}: evaluated {'with' if got else 'without'} ground truth")
    if bad:
        return False, _listing(bad, f"evaluations that contradict data/ground_truth: {want}")
    free = ", ".join(GROUND_TRUTH_FREE)
    if want:
        return True, (f"{len(metric_paths)} evaluations against the ground truth; "
                      f"ground-truth-free metrics also reported: data.poisson_deviance")
    return True, (f"{len(metric_paths)} evaluations without ground truth (external data): only "
                  f"ground-truth-free metrics are reported: {free}")


def check_inventory_disk(inventory_path, root) -> tuple[bool, str]:
    from ptycho.reporting.inventory import read_inventory

    problems = check_inventory(inventory_path, root)
    if problems:
        return False, _listing(problems, "inventory mismatches")
    return True, f"{len(read_inventory(inventory_path))} files match the inventory (size and sha256)"


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


# ----------------------------------------------------------------------------------- driver
def verify_study(study_dict: dict, scale: str, root, expected_files, dataset_pairs, histories,
                 metrics_csv, metric_paths, inventory_path,
                 overlap_tolerance: float = OVERLAP_TOLERANCE) -> dict:
    """Run every check and return the verification report (see the module docstring)."""
    expected_files = [str(p) for p in expected_files]
    dataset_pairs = [(str(a), str(b)) for a, b in dataset_pairs]
    histories = [str(p) for p in histories]
    metric_paths = [str(p) for p in metric_paths]
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
    run("evaluation_region_nonempty", check_region_nonempty, metric_paths)
    run("files_exist_nonempty", check_files, expected_files)
    run("split_invariant", check_split, dataset_pairs)
    run("overlap_on_target", check_overlap, dataset_pairs, overlap_tolerance)
    run("loss_fell", check_loss_fell, histories, study)
    run("iterative_flat_start", lambda: (need(study), check_iterative(study, metric_paths, root))[1])
    run("inventory_matches_disk", check_inventory_disk, inventory_path, root)
    run("ground_truth_metrics",
        lambda: (need(study), check_ground_truth(study, metric_paths))[1])
    run("study_matches_results",
        lambda: (need(study, rows), check_study_matches(study, scale, dataset_pairs, rows))[1])
    failed = [c["name"] for c in checks if not c["passed"]]
    return {
        "study": study.study if study else study_dict.get("study"),
        "scale": scale,
        "root": str(root),
        "passed": not failed,
        "failed": failed,
        "checks": checks,
    }


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
