"""Reporting: tidy table, summary, figures, inventory, provenance and the verification report,
on a small synthetic result tree (2 doses x 2 overlaps x 2 arms) built in tmp_path."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from ptycho.data.dataset import DatasetMeta, DatasetWriter
from ptycho.errors import PtychoError
from ptycho.reporting.inventory import (
    build_inventory,
    check_inventory,
    read_inventory,
    write_inventory,
)
from ptycho.reporting.provenance import build_provenance, parse_benchmark
from ptycho.reporting.records import (
    CSV_COLUMNS,
    collect_metrics,
    collect_references,
    collect_timing,
    load_records,
    read_metrics_csv,
    write_metrics_csv,
)
from ptycho.reporting.tables import write_summary_md
from ptycho.reporting.verify import assert_verified, check_iterative, verify_study

REPO = Path(__file__).resolve().parents[1]
DOSES = {"1e3": 1000.0, "1e4": 10000.0}
OVERLAPS = {"dense": 0.7, "sparse": 0.2}
ARMS = ("pinn_g1", "baseline")
METRIC_NAMES = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50_px", "frc17_px", "psnr_data_range")
N = 8
SHAPE = (48, 40)


def _study_dict() -> dict:
    d = yaml.safe_load((REPO / "studies" / "dose_overlap" / "study.yaml").read_text())
    d = copy.deepcopy(d)
    d.update(study="tiny_report", arms=["pinn", "baseline"], gridsizes=[1], doses=list(DOSES.values()),
             overlaps=dict(OVERLAPS))
    return d


def _ssim(i_d, i_o, arm, q):
    return 0.5 + 0.2 * i_d - 0.1 * i_o + (0.1 if arm == "pinn_g1" else 0.0) - (0.05 if q == "phase" else 0)


def _metrics(arm, dose_lbl, ov):
    i_d, i_o = list(DOSES).index(dose_lbl), list(OVERLAPS).index(ov)
    m = {}
    for q in ("amplitude", "phase"):
        s = _ssim(i_d, i_o, arm, q)
        m[q] = {"mae": 0.1 * (1 - s), "mse": 0.01 * (1 - s), "psnr": 20 + 10 * s, "ssim": s,
                "ms_ssim": min(1.0, s + 0.05), "frc50_px": 8 - 4 * s, "frc17_px": 6 - 3 * s,
                "psnr_data_range": 0.6 if q == "amplitude" else 2.0}
    m["complex"] = {"nce": 0.3 * (1 - _ssim(i_d, i_o, arm, "amplitude"))}
    freq = list(np.linspace(0, 0.5, 12))
    return {
        "arm": arm, "gridsize": 1, "dose": DOSES[dose_lbl], "dose_label": dose_lbl, "overlap_view": ov,
        "region_pixels": 300, "alignment": {"shift": [0.1, -0.2]}, "metrics": m,
        "frc": {q: {"freq": freq, "frc": list(np.exp(-np.array(freq) * (6 - 4 * m[q]["ssim"])))}
                for q in ("amplitude", "phase")},
        "recon_wall_time_s": 0.5 if arm == "pinn_g1" else 0.7,
        "recon_info": {},
        "reference": {"flat_object": {"amplitude": {"ssim": 0.6, "mae": 0.05, "ms_ssim": 0.3},
                                      "phase": {"ssim": 0.2, "mae": 0.4},
                                      "complex": {"nce": 0.5}}},
        "replicate": 0,
        "fluence": {"photons_per_px": DOSES[dose_lbl] * (0.2 if ov == "dense" else 0.05),
                    "photons_per_m2": None, "exposures_per_px": 0.2 if ov == "dense" else 0.05,
                    "pixel_size_m": None},
        "intervals": {q: {k: [v - 0.01 - 0.02 * abs(v), v + 0.01 + 0.02 * abs(v)]
                          for k, v in m[q].items() if k != "psnr_data_range"} for q in m},
        "frc_limits": {"nyquist_px": 2.0, "largest_px": 26.0},
    }


def _write_dataset(path, split, positions, dose, ov, study_name="tiny_report"):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    obj = ((0.6 + 0.4 * np.cos(xx / 5.0)) * np.exp(1j * 0.5 * np.sin(yy / 7.0))).astype(np.complex64)
    probe = np.exp(-((np.arange(N) - N / 2)[:, None] ** 2 + (np.arange(N) - N / 2)[None] ** 2) / 6.0)
    cfg = {"study": {"study": study_name}, "scale": "scaled", "overlap_view": ov, "split_row": 24}
    meta = DatasetMeta(dose=dose, overlap_target=OVERLAPS[ov], overlap_measured=OVERLAPS[ov] + 0.01,
                       overlap_area=0.5, probe_diameter=5.0, split=split, seed=1, config=cfg)
    with DatasetWriter(path, len(positions), positions, probe.astype(np.complex64), obj, meta) as w:
        w.write(rng.poisson(3.0, (len(positions), N, N)).astype(np.float32))


TRAIN_POS = np.array([[6.0, 6.0], [6.0, 12.0], [12.0, 6.0], [12.0, 12.0]])
TEST_POS = np.array([[32.0, 6.0], [32.0, 12.0], [38.0, 6.0], [38.0, 12.0]])


def _write_aligned(path, i):
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    truth = ((0.6 + 0.4 * np.cos(xx / 5.0)) * np.exp(1j * 0.5 * np.sin(yy / 7.0))).astype(np.complex64)
    noise = np.random.default_rng(i).normal(0, 0.05 * (i + 1), SHAPE)
    aligned = (truth * (1 + noise) * np.exp(1j * noise)).astype(np.complex64)
    mask = np.zeros(SHAPE, np.uint8)
    mask[28:44, 4:30] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["aligned"], f["truth"], f["mask"] = aligned, truth, mask


def _bench(path, s, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{s}\t0:00:0{int(s)}\t{rss}\t500.0\t90.0\t95.0\t0.1\t0.2\t80.0\t{s * 0.9}\n")


@pytest.fixture
def tree(tmp_path):
    """A complete fake result directory R plus the lists the verify rule would pass."""
    R = tmp_path / "results" / "tiny_report" / "scaled"
    cells = [(d, o) for d in DOSES for o in OVERLAPS]
    pairs, histories, labels, metric_paths, aligned, expected, benches = [], [], [], [], [], [], []
    for k, (d, o) in enumerate(cells):
        c = f"{d}_{o}"
        tr, te = R / "data" / c / "train.h5", R / "data" / c / "test.h5"
        _write_dataset(tr, "train", TRAIN_POS, DOSES[d], o)
        _write_dataset(te, "test", TEST_POS, DOSES[d], o)
        pairs.append((str(tr), str(te)))
        expected += [str(tr), str(te)]
        for j, arm in enumerate(ARMS):
            h = R / "models" / arm / c / "history.csv"
            h.parent.mkdir(parents=True, exist_ok=True)
            loss = [2.0, 1.5, 1.2, 1.1, 1.05]
            h.write_text("epoch,loss,val_loss,lr\n" + "".join(
                f"{e},{v * (1 + j)},{v * (1 + j) * 1.1},0.001\n" for e, v in enumerate(loss)))
            histories.append(str(h))
            labels.append(f"{arm} {d} {o}")
            mp = R / "eval" / arm / c / "metrics.json"
            mp.parent.mkdir(parents=True, exist_ok=True)
            mp.write_text(json.dumps(_metrics(arm, d, o)))
            metric_paths.append(str(mp))
            ap = R / "eval" / arm / c / "aligned.h5"
            _write_aligned(ap, j)
            aligned.append(str(ap))
            expected += [str(h), str(mp), str(ap)]
            b = R / "benchmarks" / "evaluate_arm" / arm / f"{c}.tsv"
            _bench(b, 1.0 + k, 100.0 + 10 * k + j)
            benches.append(str(b))
    csv_path = R / "report" / "metrics.csv"
    write_metrics_csv(collect_metrics(load_records(metric_paths), "tiny_report", "scaled"), csv_path)
    expected.append(str(csv_path))
    return {"R": R, "pairs": pairs, "histories": histories, "labels": labels,
            "metrics": metric_paths, "aligned": aligned, "expected": expected, "csv": csv_path,
            "benchmarks": benches, "study": _study_dict()}


def _verify(t):
    R = t["R"]
    inv = R / "report" / "artifact_inventory.txt"
    excl = [str(inv), "report/verification_report.json"]
    write_inventory(build_inventory(R, excl), inv, root=R, exclude=excl)
    return verify_study(t["study"], "scaled", R, t["expected"], t["pairs"], t["histories"], t["csv"],
                        t["metrics"], inv)


def _check(report, name):
    (c,) = [c for c in report["checks"] if c["name"] == name]
    return c


# ------------------------------------------------------------------------------- tables
def test_metrics_csv_has_exactly_the_expected_rows(tree):
    rows = read_metrics_csv(tree["csv"])
    with open(tree["csv"]) as fh:
        assert next(csv.reader(fh)) == list(CSV_COLUMNS)
    # 4 cells x 2 arms x (2 quantities x 8 metrics + 1 complex nce)
    assert len(rows) == 4 * 2 * 17
    keys = {(r["dose"], r["overlap"], r["arm"], r["quantity"], r["metric"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r["study"] for r in rows} == {"tiny_report"} and {r["scale"] for r in rows} == {"scaled"}
    (row,) = [r for r in rows if r["dose"] == 10000.0 and r["overlap"] == "sparse"
              and r["arm"] == "pinn_g1" and r["quantity"] == "phase" and r["metric"] == "ssim"]
    assert row["value"] == pytest.approx(0.5 + 0.2 - 0.1 + 0.1 - 0.05)
    assert row["gridsize"] == 1


def test_summary_markdown_rows_and_timing(tree, tmp_path):
    rows = read_metrics_csv(tree["csv"])
    md = tmp_path / "summary.md"
    write_summary_md(rows, collect_timing(load_records(tree["metrics"])), md)
    text = md.read_text()
    table = [ln for ln in text.splitlines() if ln.startswith("| 1e")]
    assert len(table) == 8 + 4  # cell x arm rows, then one timing row per cell
    # best amplitude SSIM in bold, with its interval; the cell's fluence (photons/px) beside it
    assert "| 1e4 | dense | 2000 | pinn_g1 | **0.800 [0.774, 0.826]** |" in text
    assert "0.70" in text and "0.50" in text  # wall times of baseline and pinn_g1


def test_summary_shows_the_flat_object_floor_and_margins(tree, tmp_path):
    rows = read_metrics_csv(tree["csv"])
    refs = collect_references(load_records(tree["metrics"]))
    assert len(refs) == 4 and refs[(10000.0, "sparse")]["amplitude"]["ssim"] == 0.6
    md = tmp_path / "summary.md"
    write_summary_md(rows, None, md, references=refs)
    text = md.read_text()
    flat_rows = [ln for ln in text.splitlines() if ln.startswith("|") and "*flat object*" in ln]
    assert len(flat_rows) == 4  # one per cell, after its arms
    assert flat_rows[0].startswith("| 1e3 | dense | 200 | *flat object* | 0.600 |")
    # margins: pinn_g1 at 1e4 sparse has amplitude SSIM 0.7, phase 0.65 (fixture formula)
    (margin,) = [ln for ln in text.split("## SSIM above the flat-object floor")[1].splitlines()
                 if ln.startswith("| 1e4 | sparse |")]
    assert "+0.100 / +0.450" in margin  # pinn_g1: 0.7 - 0.6, 0.65 - 0.2
    assert "+0.000 / +0.350" in margin  # baseline: 0.6 - 0.6, 0.55 - 0.2


# ------------------------------------------------------------------------------- verification
def test_complete_tree_passes_every_check(tree):
    report = _verify(tree)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    names = [c["name"] for c in report["checks"]]
    for n in ("grid_complete", "metrics_finite_and_in_range", "files_exist_nonempty", "split_invariant",
              "overlap_on_target", "loss_fell", "iterative_flat_start", "inventory_matches_disk",
              "study_matches_results"):
        assert n in names
    # the fixture's baseline amplitude at 1e3 sparse (0.4) is below the flat object's 0.6, with
    # its MS-SSIM (0.45) above the flat object's 0.3: a note for the reader, not a failure
    (info,) = [i for i in report["information"] if i["name"] == "network_below_flat_object"]
    assert "baseline amplitude at 1e3 sparse (0.400 < flat 0.600, MS-SSIM 0.450 > flat 0.300)" \
        in info["detail"]
    assert "score above the flat object in MS-SSIM" in info["detail"]


def test_missing_arm_fails_grid_complete_and_names_the_cell(tree):
    drop = [p for p in tree["metrics"] if "/baseline/1e4_sparse/" in p]
    assert len(drop) == 1
    metrics = [p for p in tree["metrics"] if p not in drop]
    write_metrics_csv(collect_metrics(load_records(metrics), "tiny_report", "scaled"), tree["csv"])
    tree["metrics"] = metrics
    report = _verify(tree)
    c = _check(report, "grid_complete")
    assert not c["passed"] and not report["passed"]
    assert "1e4_sparse/baseline" in c["detail"]
    assert "1e3_dense" not in c["detail"]
    assert "grid_complete" in report["failed"]


def test_nan_metric_fails_range_check(tree):
    rows = read_metrics_csv(tree["csv"])
    for r in rows:
        if r["arm"] == "baseline" and r["dose"] == 1000.0 and r["overlap"] == "dense" \
                and r["quantity"] == "amplitude" and r["metric"] == "psnr":
            r["value"] = float("nan")
    write_metrics_csv(rows, tree["csv"])
    assert "nan" in tree["csv"].read_text()
    report = _verify(tree)
    c = _check(report, "metrics_finite_and_in_range")
    assert not c["passed"]
    assert "1e3_dense/baseline amplitude.psnr" in c["detail"]
    assert _check(report, "grid_complete")["passed"]


def test_out_of_range_ssim_fails(tree):
    rows = read_metrics_csv(tree["csv"])
    rows[3]["value"] = 1.5 if rows[3]["metric"] == "ssim" else rows[3]["value"]
    assert rows[3]["metric"] == "ssim"
    write_metrics_csv(rows, tree["csv"])
    assert not _check(_verify(tree), "metrics_finite_and_in_range")["passed"]


def test_loss_that_did_not_fall_is_named(tree):
    h = Path(tree["histories"][0])
    h.write_text("epoch,loss,val_loss,lr\n0,1.0,1.0,0.001\n1,1.0,1.1,0.001\n2,1.2,1.2,0.001\n")
    c = _check(_verify(tree), "loss_fell")
    assert not c["passed"] and str(h) in c["detail"]


def test_loss_fell_judges_the_validation_loss_against_the_loss_before_training(tree):
    h = Path(tree["histories"][0])
    bundle = h.parent / "bundle.json"
    # few, noisy steps: the running training loss rises while the validation loss falls below
    # the loss before training (what a sparse gridsize-2 cell of the default study does)
    h.write_text("epoch,loss,val_loss,lr\n1,10.8,10.0,0.002\n2,11.5,9.6,0.002\n3,12.3,9.0,0.002\n")
    bundle.write_text(json.dumps({"initial_loss": 10.1}))
    assert _check(_verify(tree), "loss_fell")["passed"]
    # never below the loss before training: named, even though it fell after the first epoch
    bundle.write_text(json.dumps({"initial_loss": 8.5}))
    c = _check(_verify(tree), "loss_fell")
    assert not c["passed"] and str(h) in c["detail"] and "before training 8.5" in c["detail"]


def test_leaking_split_fails(tree):
    _, te = tree["pairs"][0]
    Path(te).unlink()
    _write_dataset(te, "test", np.array([[14.0, 12.0], [32.0, 6.0]]), 1000.0, "dense")
    c = _check(_verify(tree), "split_invariant")
    assert not c["passed"] and te in c["detail"]


def test_dataset_of_another_study_fails(tree):
    _, te = tree["pairs"][1]
    Path(te).unlink()
    _write_dataset(te, "test", TEST_POS, 1000.0, "sparse", study_name="other")
    c = _check(_verify(tree), "study_matches_results")
    assert not c["passed"] and "other" in c["detail"]


def test_iterative_flat_start(tmp_path):
    d = _study_dict()
    d["arms"] = ["pinn", "baseline", "iterative"]
    from ptycho.config import StudyConfig

    study = StudyConfig.from_dict(d)
    good = dict(_metrics("baseline", "1e3", "dense"), arm="iterative",
                recon_info={"initial_object": "flat", "iterations": 100})
    bad = dict(good, overlap_view="sparse", recon_info={"initial_object": "ground_truth", "iterations": 0})
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert check_iterative(study, load_records([tmp_path / "good.json"]), tmp_path)[0]
    ok, detail = check_iterative(study, load_records([tmp_path / "good.json", tmp_path / "bad.json"]),
                                 tmp_path)
    assert not ok and "1e3_sparse" in detail and "1e3_dense" not in detail
    assert not check_iterative(study, [], tmp_path)[0]


# ------------------------------------------------------------------------------- inventory
def test_inventory_hashes_match_hashlib(tree, tmp_path):
    R = tree["R"]
    inv = tmp_path / "inv.txt"
    entries = build_inventory(R, ["report/*"])
    write_inventory(entries, inv, root=R, exclude=["report/*"])
    assert read_inventory(inv) == entries
    assert inv.read_text().startswith("#") and "report/*" in inv.read_text().splitlines()[1]
    rels = [e[0] for e in entries]
    assert rels == sorted(rels) and not any(r.startswith("report/") for r in rels)
    on_disk = sorted(p.relative_to(R).as_posix() for p in R.rglob("*")
                     if p.is_file() and not p.relative_to(R).as_posix().startswith("report/"))
    assert rels == on_disk
    for rel, size, digest in entries:
        data = (R / rel).read_bytes()
        assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert check_inventory(inv, R) == []
    (R / rels[0]).write_bytes(b"changed")
    (R / "extra.txt").write_text("x")
    problems = check_inventory(inv, R)
    assert any(rels[0] in p for p in problems) and any("extra.txt" in p for p in problems)


def test_deleted_file_fails_inventory_and_existence_checks(tree):
    R = tree["R"]
    inv = R / "report" / "artifact_inventory.txt"
    excl = [str(inv)]
    write_inventory(build_inventory(R, excl), inv, root=R, exclude=excl)
    victim = Path(tree["histories"][2])
    rel = victim.relative_to(R).as_posix()
    victim.unlink()
    tree["histories"].remove(str(victim))  # the history check itself is not the point here
    report = verify_study(tree["study"], "scaled", R, tree["expected"], tree["pairs"],
                          tree["histories"], tree["csv"], tree["metrics"], inv)
    inv_c, files_c = _check(report, "inventory_matches_disk"), _check(report, "files_exist_nonempty")
    assert not inv_c["passed"] and rel in inv_c["detail"]
    assert not files_c["passed"] and str(victim) in files_c["detail"]
    assert not report["passed"]


def test_every_metrics_file_is_read_once_per_job(tree, tmp_path, monkeypatch):
    """The verification reads each metrics.json once and hands the records to every check; the
    summary job reads them once for the table, the references, the timing and the uncertainty."""
    import collections

    from ptycho.evaluation import record
    from ptycho.reporting.tables import collect_uncertainty

    reads = collections.Counter()
    original = record.read_json

    def counting(path, *args, **kwargs):
        reads[str(path)] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(record, "read_json", counting)
    once = {str(Path(p)): 1 for p in tree["metrics"]}
    report = _verify(tree)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert reads == once
    reads.clear()
    records = load_records(tree["metrics"])
    rows = collect_metrics(records, "tiny_report", "scaled")
    write_summary_md(rows, collect_timing(records), tmp_path / "s.md",
                     references=collect_references(records),
                     uncertainty=collect_uncertainty(records, rows, tree["study"]))
    assert reads == once


def test_assert_verified_raises_with_check_names(tree, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_verify(tree)))
    assert_verified(good)  # no error
    Path(tree["expected"][0]).unlink()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_verify(tree)))
    with pytest.raises(PtychoError) as err:
        assert_verified(bad)
    msg = str(err.value)
    assert "files_exist_nonempty" in msg and tree["expected"][0] in msg
    with pytest.raises(PtychoError):
        assert_verified(tmp_path / "missing.json")


# ------------------------------------------------------------------------------- provenance
def test_provenance_parses_benchmarks(tree, tmp_path):
    prov = build_provenance(tree["study"], "scaled", tree["R"], tree["benchmarks"], repo_dir=tmp_path)
    json.dumps(prov)  # JSON-able
    key = "evaluate_arm/baseline/1e3_sparse.tsv"
    assert prov["jobs"][key]["wall_time_s"] == 2.0 and prov["jobs"][key]["max_rss_mb"] == 111.0
    assert prov["totals"]["jobs"] == 8
    assert prov["totals"]["wall_time_s"] == pytest.approx(2 * (1 + 2 + 3 + 4))
    assert prov["totals"]["peak_rss_mb"] == 131.0
    assert prov["seeds"] == {**tree["study"]["seeds"], "bootstrap": 13}  # defaults resolved
    assert prov["git"]["commit"] is None  # tmp_path is not a git checkout
    assert prov["packages"]["numpy"] == np.__version__
    assert "tensorflow" in prov["packages"] and "ptychi" in prov["packages"]
    assert prov["config"]["study"] == "tiny_report"
    b = parse_benchmark(tree["benchmarks"][0])
    assert b["cpu_time_s"] == pytest.approx(0.9) and b["repeats"] == 1


# ------------------------------------------------------------------------------- figures
def _png_size(path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_are_written(tree, tmp_path):
    from ptycho.reporting import grids
    from ptycho.reporting.comparison import plot_cell_comparison
    from ptycho.reporting.dataset_figure import plot_dataset_summary

    out = tmp_path / "fig"
    csv_path = tree["csv"]
    grids.plot_metric_grid(csv_path, out / "ssim.png", "ssim", overlap_targets=OVERLAPS)
    grids.plot_metric_grid(csv_path, out / "ms_ssim.png", "ms_ssim")
    grids.plot_delta_grid(csv_path, out / "delta.png")
    grids.plot_metric_vs_dose(csv_path, out / "vs_dose.png")
    grids.plot_frc_curves(load_records(tree["metrics"]), out / "frc.png")
    grids.plot_loss_curves(tree["histories"], tree["labels"], out / "loss.png")
    cell = [i for i, p in enumerate(tree["metrics"]) if "/1e3_dense/" in p]
    plot_cell_comparison([tree["aligned"][i] for i in cell], list(ARMS),
                         [tree["metrics"][i] for i in cell], out / "cell.png", "tiny: 1e3 dense")
    plot_dataset_summary(*tree["pairs"][0], out / "data.png")
    for name in ("ssim", "ms_ssim", "delta", "vs_dose", "frc", "loss", "cell", "data"):
        w, h = _png_size(out / f"{name}.png")
        assert w >= 400 and h >= 250, (name, w, h)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_delta_grid_without_comparable_arms_still_writes(tree, tmp_path):
    from ptycho.reporting import grids

    rows = [r for r in read_metrics_csv(tree["csv"]) if r["arm"] == "baseline"]
    write_metrics_csv(rows, tmp_path / "m.csv")
    grids.plot_delta_grid(tmp_path / "m.csv", tmp_path / "d.png")
    assert _png_size(tmp_path / "d.png")[0] > 100
    assert math.isfinite(rows[0]["value"])


# ------------------------------------------------------------------------------- workflow scripts
def _run_script(name, monkeypatch, **parts):
    """Run workflow/scripts/<name> with a stand-in for Snakemake's ``snakemake`` object."""
    import logging
    import runpy
    from types import SimpleNamespace

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL"):
        monkeypatch.setenv(var, "1")
    smk = SimpleNamespace(input=SimpleNamespace(**parts.get("input", {})),
                          output=SimpleNamespace(**parts["output"]),
                          params=SimpleNamespace(**parts.get("params", {})),
                          log=parts.get("log", []), threads=1, rule=name.removesuffix(".py"))
    root_logger = logging.getLogger()
    saved = (root_logger.handlers[:], root_logger.level)
    try:
        runpy.run_path(str(REPO / "workflow" / "scripts" / name), init_globals={"snakemake": smk},
                       run_name="__main__")
    finally:
        for h in root_logger.handlers:
            if h not in saved[0]:
                h.close()
        root_logger.handlers[:], root_logger.level = saved


def test_scripts_tables_verify_and_assert(tree, monkeypatch):
    R = tree["R"]
    rep = R / "report"
    _run_script("report_tables.py", monkeypatch, input={"metrics": tree["metrics"]},
                output={"csv": str(rep / "metrics.csv"),
                        "quality_time": str(rep / "quality_time.csv")},
                params={"study": tree["study"], "scale": "scaled"})
    assert len(read_metrics_csv(rep / "metrics.csv")) == 4 * 2 * 17
    bench = R / "benchmarks" / "verify_study.tsv"
    _bench(bench, 1.0, 50.0)  # a previous run's benchmark: excluded by the rule name
    out = {"report": str(rep / "verification_report.json"),
           "inventory": str(rep / "artifact_inventory.txt"), "provenance": str(rep / "provenance.json")}
    _run_script("verify_study.py", monkeypatch,
                input={"expected": tree["expected"], "train": [p[0] for p in tree["pairs"]],
                       "test": [p[1] for p in tree["pairs"]], "histories": tree["histories"],
                       "csv": str(rep / "metrics.csv"), "metrics": tree["metrics"],
                       "benchmarks": tree["benchmarks"]},
                output=out, params={"study": tree["study"], "scale": "scaled", "root": str(R)},
                log=[str(R / "logs" / "verify_study.log")])
    report = json.loads(Path(out["report"]).read_text())
    assert report["passed"], report["failed"]
    rels = [e[0] for e in read_inventory(out["inventory"])]
    for skipped in ("report/verification_report.json", "report/artifact_inventory.txt",
                    "report/provenance.json", "logs/verify_study.log", "benchmarks/verify_study.tsv"):
        assert skipped not in rels
    assert "report/metrics.csv" in rels and "data/1e3_dense/train.h5" in rels
    prov = json.loads(Path(out["provenance"]).read_text())
    assert prov["totals"]["jobs"] == 8
    # the summary, written after the verification, states its verdict first
    summary = {"md": str(rep / "summary.md"), "html": str(rep / "summary.html"),
               "verdict": str(rep / "verdict.html")}
    _run_script("report_summary.py", monkeypatch,
                input={"metrics": tree["metrics"], "report": out["report"]}, output=summary,
                params={"study": tree["study"], "scale": "scaled"})
    md = (rep / "summary.md").read_text()
    n = len(report["checks"])
    assert md.splitlines()[2] == f"**Verification: passed** ({n} of {n} checks passed)."
    assert md.index("## Answer: which arm") < md.index("## Verification") < md.index("pinn_g1 |")
    for name in ("summary.html", "verdict.html"):
        page = (rep / name).read_text()
        assert "Verification: passed" in page and "Answer: which arm" in page
    ok = rep / "verified.ok"
    _run_script("assert_verified.py", monkeypatch, input={"report": out["report"]},
                output={"ok": str(ok)})
    assert ok.read_text().startswith("verified")
    # A failed report: the verify script still succeeds, the assert script exits non-zero.
    Path(tree["metrics"][0]).unlink()
    ok.unlink()
    _run_script("verify_study.py", monkeypatch,
                input={"expected": tree["expected"], "train": [p[0] for p in tree["pairs"]],
                       "test": [p[1] for p in tree["pairs"]], "histories": tree["histories"],
                       "csv": str(rep / "metrics.csv"), "metrics": tree["metrics"][1:],
                       "benchmarks": tree["benchmarks"]},
                output=out, params={"study": tree["study"], "scale": "scaled", "root": str(R)},
                log=[str(R / "logs" / "verify_study.log")])
    assert not json.loads(Path(out["report"]).read_text())["passed"]
    with pytest.raises(SystemExit) as err:
        _run_script("assert_verified.py", monkeypatch, input={"report": out["report"]},
                    output={"ok": str(ok)})
    assert err.value.code == 1 and not ok.exists()


# ------------------------------------------------------------------------------- replicates
def _replicated(tree, n_rep=2):
    """Copies of every metrics file and dataset as replicates 1 .. n_rep - 1 (values shifted by
    0.01 per replicate), and the study asking for n_rep replicates at the scaled scale."""
    metrics, pairs = list(tree["metrics"]), list(tree["pairs"])
    for k in range(1, n_rep):
        for p in tree["metrics"]:
            m = json.loads(Path(p).read_text())
            m["replicate"] = k
            for q in ("amplitude", "phase"):
                m["metrics"][q]["ssim"] += 0.01 * k
                m["intervals"][q]["ssim"] = [v + 0.01 * k for v in m["intervals"][q]["ssim"]]
            out = Path(p).with_name(f"metrics_r{k}.json")
            out.write_text(json.dumps(m))
            metrics.append(str(out))
        for tr, te in tree["pairs"]:
            new = []
            for path, split, pos in ((tr, "train", TRAIN_POS), (te, "test", TEST_POS)):
                with h5py.File(path) as f:
                    dose, ov = float(f.attrs["dose"]), json.loads(f.attrs["config"])["overlap_view"]
                target = Path(path).with_name(f"{split}_r{k}.h5")
                _write_dataset(target, split, pos, dose, ov)
                with h5py.File(target, "a") as f:
                    f.attrs["replicate"] = k
                new.append(str(target))
            pairs.append(tuple(new))
    study = copy.deepcopy(tree["study"])
    study["scales"]["scaled"]["replicates"] = n_rep
    return metrics, pairs, study


def test_replicates_show_mean_and_spread_and_are_verified(tree, tmp_path):
    from ptycho.reporting.tables import collect_uncertainty
    from ptycho.reporting.uncertainty import summarise_replicates
    from ptycho.reporting.verify import check_intervals, check_replicates

    paths, pairs, study_d = _replicated(tree, 3)
    metrics = load_records(paths)
    rows = collect_metrics(metrics, "tiny_report", "scaled")
    assert len(rows) == 3 * 4 * 2 * 17 and {r["replicate"] for r in rows} == {0, 1, 2}
    est = summarise_replicates(rows)[(10000.0, "dense", "pinn_g1", "amplitude", "ssim")]
    # values 0.80, 0.81, 0.82: mean 0.81, sd 0.01, t interval 0.81 +- 4.303 * 0.01 / sqrt(3)
    assert est.n == 3 and est.value == pytest.approx(0.81) and est.sd == pytest.approx(0.01)
    assert est.high - est.value == pytest.approx(4.3027 * 0.01 / np.sqrt(3), rel=1e-3)
    md = tmp_path / "s.md"
    write_summary_md(rows, collect_timing(metrics), md,
                     uncertainty=collect_uncertainty(metrics, rows, study_d))
    text = md.read_text()
    assert "| 1e4 | dense | 2000 | pinn_g1 | **0.810 ± 0.010** |" in text
    assert "mean ± standard deviation over 3 replicates" in text
    # paired differences over replicates: pinn_g1 - baseline SSIM is 0.1 in every replicate
    (line,) = [ln for ln in text.split("## Paired differences")[1].splitlines()
               if ln.startswith("| 1e4 | dense | pinn_g1 − baseline |")]
    assert "+0.100 [+0.100, +0.100] *" in line
    from ptycho.config import StudyConfig

    study = StudyConfig.from_dict(study_d)
    ok, detail = check_replicates(study, "scaled", pairs, metrics)
    assert ok, detail
    assert check_intervals(metrics)[0]
    # a missing replicate, a replicate beyond the study, a replicate with another scan
    ok, detail = check_replicates(study, "scaled", pairs, [
        m for m in metrics if not m.path.endswith("baseline/1e3_sparse/metrics_r2.json")])
    assert not ok and "1e3_sparse_r2 (no metrics for baseline)" in detail
    two = StudyConfig.from_dict({**study_d, "scales": {**study_d["scales"], "scaled": {
        **study_d["scales"]["scaled"], "replicates": 2}}})
    ok, detail = check_replicates(two, "scaled", pairs, metrics)
    assert not ok and "beyond the study's 2" in detail and "1e4_dense_r2" in detail
    moved = Path(pairs[-1][1])
    moved.unlink()
    _write_dataset(moved, "test", TEST_POS + 1.0, 10000.0, "sparse")
    with h5py.File(moved, "a") as f:
        f.attrs["replicate"] = 2
    ok, detail = check_replicates(study, "scaled", pairs, metrics)
    assert not ok and "other scan positions" in detail and str(moved) in detail


def test_interval_that_misses_its_value_fails_verification(tree):
    p = Path(tree["metrics"][0])
    m = json.loads(p.read_text())
    m["intervals"]["phase"]["mae"] = [m["metrics"]["phase"]["mae"] + 0.01, 1.0]
    m["intervals"]["amplitude"]["ssim"] = [float("nan"), 1.0]
    del m["intervals"]["complex"]
    p.write_text(json.dumps(m))
    c = _check(_verify(tree), "intervals_valid")
    assert not c["passed"]
    assert "phase.mae" in c["detail"] and "outside" in c["detail"]
    assert "amplitude.ssim: interval [nan, 1.0]" in c["detail"]
    assert "complex.nce: no interval" in c["detail"]


def test_fluence_and_dose_resolution_outputs(tree, tmp_path, monkeypatch):
    from ptycho.reporting.dose_resolution import dose_resolution_fits

    rows = read_metrics_csv(tree["csv"])
    fits = dose_resolution_fits(rows)
    # fixture: frc17 = 6 - 3 SSIM at fluences 200 / 2000 (dense) and 50 / 500 (sparse)
    (f,) = [e for e in fits if (e["arm"], e["overlap"], e["quantity"]) == ("pinn_g1", "dense",
                                                                          "amplitude")]
    assert f["n_points"] == 2 and f["exponent"] == pytest.approx(np.log10(3.6 / 4.2))
    assert f["contains_minus_quarter"] is None  # two points: no interval
    out = tmp_path / "out"
    _run_script("report_fluence.py", monkeypatch,
                input={"csv": str(tree["csv"]), "metrics": tree["metrics"]},
                output={"csv": str(out / "fits.csv"), "fluence": str(out / "fluence.png"),
                        "fits": str(out / "fits.png")},
                params={"study": {**tree["study"], "equal_fluence": {
                    "cells": [{"dose": 1000.0, "overlap": "dense"},
                              {"dose": 10000.0, "overlap": "sparse"}], "tolerance": 0.5}}})
    lines = (out / "fits.csv").read_text().splitlines()
    assert lines[0].startswith("arm,overlap,quantity,n_points") and len(lines) == 1 + 8
    for name in ("fluence", "fits"):
        w, h = _png_size(out / f"{name}.png")
        assert w >= 400 and h >= 250
    # censored points (Nyquist, the largest period) are left out of the fit
    for r in rows:
        if r["metric"] == "frc17_px" and r["dose"] == 1000.0:
            r["value"] = 2.0
    fits = dose_resolution_fits(rows)
    assert all(e["n_censored"] == 1 and e["status"].startswith("not fitted") for e in fits)


def test_equal_fluence_view_in_the_summary(tree, tmp_path):
    from ptycho.reporting.tables import collect_uncertainty

    rows = read_metrics_csv(tree["csv"])
    study = {**tree["study"], "equal_fluence": {
        "cells": [{"dose": 1000.0, "overlap": "dense"}, {"dose": 10000.0, "overlap": "sparse"}],
        "tolerance": 0.5}}
    md = tmp_path / "s.md"
    write_summary_md(rows, None, md, uncertainty=collect_uncertainty(load_records(tree["metrics"]), rows, study))
    section = md.read_text().split("## Equal-fluence view")[1].split("## ")[0]
    # fixture fluences: 1e3 dense 200, 1e4 sparse 500 photons/px; SSIM with intervals
    assert "| 1e3 | dense | 200 | 0.600 [0.578, 0.622] / 0.550 [0.529, 0.571] |" in section
    assert "| 1e4 | sparse | 500 | 0.700 [0.676, 0.724] / 0.650 [0.627, 0.673] |" in section
    assert "1e3 dense: 1.111e+04, 1e4 sparse: 1.562e+04" in section


def _tidy(arm, q, metric, value, dose=1e5, overlap="dense", replicate=0):
    return {"dose": dose, "overlap": overlap, "arm": arm, "quantity": q, "metric": metric,
            "value": value, "replicate": replicate, "ci_low": math.nan, "ci_high": math.nan}


def test_below_floor_flags_network_arms_under_the_flat_object_with_their_ms_ssim():
    """A network arm below the flat object's SSIM is flagged with both values; where its MS-SSIM
    is above the flat object's the text and the markdown say so; a solver arm below the floor is
    not a network result; an arm above the floor is not flagged."""
    from ptycho.reporting.verdict import below_floor, below_floor_text, floor_markdown

    refs = {(1e5, "dense"): {"amplitude": {"ssim": 0.498, "ms_ssim": 0.157},
                             "phase": {"ssim": 0.222, "ms_ssim": 0.167}}}
    rows = [_tidy("pinn_g1", "amplitude", "ssim", 0.411), _tidy("pinn_g1", "amplitude", "ms_ssim", 0.662),
            _tidy("pinn_g1", "phase", "ssim", 0.466), _tidy("pinn_g1", "phase", "ms_ssim", 0.777),
            _tidy("baseline", "amplitude", "ssim", 0.40), _tidy("baseline", "amplitude", "ms_ssim", 0.10),
            _tidy("iterative", "amplitude", "ssim", 0.30)]
    low = below_floor(rows, refs)
    assert [(e["arm"], e["quantity"]) for e in low] == [("pinn_g1", "amplitude"),
                                                        ("baseline", "amplitude")]
    assert low[0] == {"dose": 1e5, "overlap": "dense", "arm": "pinn_g1", "quantity": "amplitude",
                      "value": 0.411, "floor": 0.498, "ms_ssim": 0.662, "ms_floor": 0.157}
    assert below_floor_text(low) == ("pinn_g1 amplitude at 1e5 dense (0.411 < flat 0.498, "
                                     "MS-SSIM 0.662 > flat 0.157); baseline amplitude at 1e5 "
                                     "dense (0.400 < flat 0.498)")
    md = "\n".join(floor_markdown(rows, refs))
    assert "**Network arm below the flat object**" in md
    assert "1 of them score above the flat object in MS-SSIM" in md
    # without MS-SSIM rows the flag stands alone
    plain = [r for r in rows if r["metric"] == "ssim"]
    assert "ms_ssim" not in below_floor(plain, refs)[0]
    assert "MS-SSIM" not in "\n".join(floor_markdown(plain, refs))
