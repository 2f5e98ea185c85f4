"""The quality-time frontier: matched-quality interpolation, the iterations a network start saves,
the table and figure, and the verification of the solver arms' snapshots and hybrid start, on
synthetic metrics files with known curves."""

from __future__ import annotations

import copy
import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ptycho.config import StudyConfig
from ptycho.data.dataset import DatasetMeta, DatasetWriter
from ptycho.errors import PtychoError
from ptycho.reconstruct.io import (
    Reconstruction,
    fill_unlit,
    object_sha256,
    write_reconstruction,
)
from ptycho.reporting.frontier import (
    QT_COLUMNS,
    collect_cells,
    first_crossing,
    frontier_markdown,
    matched_quality,
    plot_quality_time,
    write_quality_time_csv,
)
from ptycho.reporting.records import load_records
from ptycho.reporting.verify import check_hybrid, check_iterative, check_snapshots

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- interpolation
def test_first_crossing_on_a_monotone_curve():
    x = np.array([0.0, 1.0, 2.0, 5.0, 10.0])
    y = 1 - np.exp(-x)  # 0, 0.632, 0.865, 0.993, 1.000
    # between x = 2 and x = 5, linearly
    expected = 2 + (0.9 - y[2]) / (y[3] - y[2]) * 3
    assert first_crossing(x, y, 0.9) == pytest.approx(expected, rel=1e-12)
    assert 2 < expected < 5
    assert first_crossing(x, y, y[3]) == pytest.approx(5.0)  # a snapshot's own value: its x
    assert first_crossing(x, y, -0.5) == 0.0  # the start already reaches it
    hits = [first_crossing(x, y, t) for t in np.linspace(0.05, 0.99, 20)]
    assert all(b > a for a, b in itertools.pairwise(hits))  # higher quality takes longer


def test_first_crossing_not_reached_is_none_not_a_number():
    assert first_crossing([0, 1, 2], [0.1, 0.5, 0.6], 0.61) is None
    assert first_crossing([0, 1], [float("nan"), float("nan")], 0.1) is None
    with pytest.raises(PtychoError, match="3 x values but 2"):
        first_crossing([0, 1, 2], [0.1, 0.2], 0.1)


# ----------------------------------------------------------------------------- synthetic cell
EPOCHS = [1, 2, 5, 10, 20]
IT_PHASE = [0.3, 0.4, 0.6, 0.8, 0.9]  # one second per epoch
HYB_PHASE = [0.75, 0.8, 0.88, 0.9, 0.92]
NET = {"pinn_g1": (0.7, 0.5), "pinn_g2": (0.95, 2.0), "baseline": (0.1, 0.4)}  # phase, seconds
FLAT = 0.2


def _m(value):
    return {"amplitude": {"ssim": value - 0.05}, "phase": {"ssim": value}, "complex": {"nce": 0.1}}


def _entry(arm, ssim, t, snaps=None, info=None, dose=1e4):
    out = {"arm": arm, "gridsize": 1, "dose": dose, "overlap_view": "dense", "metrics": _m(ssim),
           "recon_wall_time_s": t, "recon_info": info or {},
           "reference": {"flat_object": _m(FLAT)}}
    if snaps is not None:
        out["snapshots"] = snaps
    return out


def _cell_files(tmp_path: Path, dose=1e4) -> list[Path]:
    it_snaps = [{"epoch": e, "wall_time_s": float(e), "metrics": _m(v)}
                for e, v in zip(EPOCHS, IT_PHASE)]
    t0 = NET["pinn_g1"][1]
    hyb_snaps = [{"epoch": e, "wall_time_s": t0 + e, "metrics": _m(v)}
                 for e, v in zip(EPOCHS, HYB_PHASE)]
    entries = [_entry(a, s, t, dose=dose) for a, (s, t) in NET.items()]
    entries.append(_entry("iterative", IT_PHASE[-1], 20.0, it_snaps, {"iterations": 20}, dose))
    entries.append(_entry("hybrid", HYB_PHASE[-1], t0 + 20, hyb_snaps,
                          {"iterations": 20, "start_arm": "pinn_g1"}, dose))
    paths = []
    for e in entries:
        p = tmp_path / f"{e['arm']}_{dose:g}.json"
        p.write_text(json.dumps(e))
        paths.append(p)
    return paths


def _rows(tmp_path):
    rows = matched_quality(collect_cells(load_records(_cell_files(tmp_path))))
    return {(r["arm"], r["quantity"]): r for r in rows}


def test_matched_quality_time_and_speedup(tmp_path):
    r = _rows(tmp_path)
    g1 = r[("pinn_g1", "phase")]  # 0.7 lies halfway between 0.6 (epoch 5) and 0.8 (epoch 10)
    assert g1["target_ssim"] == 0.7 and g1["iterative_reached"]
    assert g1["iterative_epochs"] == pytest.approx(7.5) and g1["iterative_time_s"] == pytest.approx(7.5)
    assert g1["arm_time_s"] == 0.5 and g1["speedup"] == pytest.approx(15.0)
    # the amplitude curve is the phase curve minus 0.05: the same crossing
    assert r[("pinn_g1", "amplitude")]["iterative_epochs"] == pytest.approx(7.5)
    # above the solver's final quality: not reached, no time and no speed-up
    g2 = r[("pinn_g2", "phase")]
    assert not g2["iterative_reached"]
    assert g2["iterative_epochs"] is None and g2["iterative_time_s"] is None
    assert g2["speedup"] is None
    # below the flat start: the solver matches it at 0 s
    b = r[("baseline", "phase")]
    assert b["iterative_time_s"] == 0.0 and b["speedup"] == 0.0


def test_hybrid_iterations_saved(tmp_path):
    h = _rows(tmp_path)[("hybrid", "phase")]
    assert h["target_ssim"] == 0.9  # the flat-start solver's final phase SSIM
    assert h["iterative_epochs"] == pytest.approx(20.0)
    assert h["arm_epochs"] == pytest.approx(10.0) and h["arm_time_s"] == pytest.approx(10.5)
    assert h["epochs_saved"] == pytest.approx(10.0)
    assert h["speedup"] == pytest.approx(20.0 / 10.5)
    assert h["start_arm"] == "pinn_g1"


def test_hybrid_that_never_reaches_the_target(tmp_path):
    paths = _cell_files(tmp_path)
    hyb = json.loads(paths[-1].read_text())
    for s in hyb["snapshots"]:
        s["metrics"] = _m(0.85)
    paths[-1].write_text(json.dumps(hyb))
    rows = matched_quality(collect_cells(load_records(paths)))
    (h,) = [r for r in rows if r["arm"] == "hybrid" and r["quantity"] == "phase"]
    assert not h["arm_reached"] and h["arm_epochs"] is None and h["epochs_saved"] is None
    assert "| 1e4 | dense | phase | 0.900 | 20.00 (20.0) | not reached | — | — |" in \
        frontier_markdown(rows)


def test_table_csv_and_markdown(tmp_path):
    files = _cell_files(tmp_path, 1e4) + _cell_files(tmp_path, 1e5)
    rows = matched_quality(collect_cells(load_records(files)))
    assert len(rows) == 2 * 2 * 4  # cells x quantities x (3 networks + hybrid)
    out = tmp_path / "report" / "quality_time.csv"
    write_quality_time_csv(rows, out, "s", "scaled")
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == QT_COLUMNS
        got = list(reader)
    g2 = [g for g in got if g["arm"] == "pinn_g2" and g["quantity"] == "phase"]
    assert all(g["iterative_reached"] == "false" and g["iterative_time_s"] == "" for g in g2)
    g1 = [g for g in got if g["arm"] == "pinn_g1" and g["quantity"] == "phase"]
    assert [float(g["speedup"]) for g in g1] == pytest.approx([15.0, 15.0])
    md = frontier_markdown(rows)
    assert "| 1e4 | dense | pinn_g1 | 0.50 | 0.700 | 7.50 (7.5) | 15.00× |" in md
    assert "| 1e5 | dense | pinn_g2 | 2.00 | 0.950 | not reached in 20 epochs | — |" in md
    assert "0 (flat start)" in md
    assert "| 1e4 | dense | phase | 0.900 | 20.00 (20.0) | 10.50 (10.0) | +10.0 | 1.90× |" in md


def test_solver_arm_without_snapshots_is_an_error(tmp_path):
    paths = _cell_files(tmp_path)
    it = json.loads(paths[3].read_text())
    del it["snapshots"]
    paths[3].write_text(json.dumps(it))
    with pytest.raises(PtychoError, match=f"{paths[3].name}.*iterative arm has no convergence"):
        collect_cells(load_records(paths))


def test_no_iterative_arm_gives_no_rows(tmp_path):
    assert matched_quality(collect_cells(load_records(_cell_files(tmp_path)[:3]))) == []
    assert frontier_markdown([]) == ""


def test_quality_time_figure(tmp_path):
    png = tmp_path / "qt.png"
    plot_quality_time(load_records(_cell_files(tmp_path, 1e4) + _cell_files(tmp_path, 1e5)), png)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 500 and im.size[1] > 400
    assert png.stat().st_size > 20_000


# ----------------------------------------------------------------------------- verification
SHAPE = (40, 40)


def _study(arms=("pinn", "baseline", "iterative", "hybrid")) -> StudyConfig:
    d = copy.deepcopy(yaml.safe_load((REPO / "studies" / "dose_overlap" / "study.yaml").read_text()))
    d.update(arms=list(arms), gridsizes=[1], doses=[1000.0], overlaps={"dense": 0.7})
    d["scales"]["scaled"]["iterative"].update(iterations=20, snapshots=[1, 5])
    return StudyConfig.from_dict(d)


def _truth():
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return ((0.6 + 0.4 * np.cos(xx / 5.0)) * np.exp(0.5j * np.sin(yy / 7.0))).astype(np.complex64)


def _hybrid_tree(tmp_path):
    """A test split, pinn_g1's reconstruction in R/recon/pinn_g1/, and the hybrid's metrics."""
    R = tmp_path / "R"
    test = R / "data" / "1e3_dense" / "test.h5"
    N = 8
    pos = np.array([[20.0, 20.0], [20.0, 26.0]])
    meta = DatasetMeta(dose=1000.0, overlap_target=0.7, overlap_measured=0.7, overlap_area=0.5,
                       probe_diameter=5.0, split="test", seed=1, config={})
    with DatasetWriter(test, 2, pos, np.ones((N, N), np.complex64), _truth(), meta) as w:
        w.write(np.ones((2, N, N), np.float32))
    weight = np.zeros(SHAPE, np.float32)
    weight[10:30, 10:30] = 1
    net_obj = np.where(weight > 0, 0.8 * np.exp(0.2j), 0).astype(np.complex64)
    net = R / "recon" / "pinn_g1" / "1e3_dense.h5"
    write_reconstruction(net, Reconstruction(
        object=net_obj, weight=weight, arm="pinn_g1", gridsize=1, dose=1000.0,
        overlap_view="dense", n_patterns=2, wall_time_s=3.0, source=str(test)))
    info = {"start_arm": "pinn_g1", "start_source": str(net), "start_wall_time_s": 3.0,
            "start_object_sha256": object_sha256(fill_unlit(net_obj, weight)), "iterations": 20,
            "initial_object": "network reconstruction (pinn_g1)"}
    snaps = [{"epoch": e, "wall_time_s": 3.0 + e, "metrics": _m(0.5)} for e in (1, 5, 20)]
    m = dict(_entry("hybrid", 0.5, 23.0, snaps, info, dose=1000.0), test_path=str(test))
    path = R / "eval" / "hybrid" / "1e3_dense" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(m))
    return R, path, m


def test_hybrid_check_passes_for_the_network_start(tmp_path):
    R, path, _ = _hybrid_tree(tmp_path)
    ok, detail = check_hybrid(_study(), load_records([path]), R)
    assert ok, detail
    assert "1 hybrid reconstructions started from pinn_g1" in detail


@pytest.mark.parametrize("tamper,message", [
    ("truth", "the start object is the ground truth"),
    ("flat", "the start object is flat"),
    ("other_file", "is not pinn_g1's reconstruction"),
    ("arm", "started from baseline, the study says pinn_g1"),
    ("time", "does not include the network's 3.0 s"),
    ("missing", "no network start recorded"),
])
def test_hybrid_check_names_a_bad_start(tmp_path, tamper, message):
    R, path, m = _hybrid_tree(tmp_path)
    info = m["recon_info"]
    if tamper == "truth":
        info["start_object_sha256"] = object_sha256(_truth())
    elif tamper == "flat":
        info["start_object_sha256"] = object_sha256(np.ones(SHAPE, np.complex64))
    elif tamper == "other_file":
        message = f"{info['start_source']}'s reconstruction"
        info["start_object_sha256"] = object_sha256(np.full(SHAPE, 0.5, np.complex64))
    elif tamper == "arm":
        info["start_arm"] = "baseline"
    elif tamper == "time":
        m["recon_wall_time_s"] = 2.0
    else:
        del info["start_source"]
    path.write_text(json.dumps(m))
    ok, detail = check_hybrid(_study(), load_records([path]), R)
    assert not ok and "1e3_dense" in detail and message in detail


def test_hybrid_check_without_hybrid_metrics_fails(tmp_path):
    assert not check_hybrid(_study(), [], tmp_path)[0]
    assert check_hybrid(_study(("pinn", "iterative")), [], tmp_path)[0]


def test_flat_start_check_reads_the_recorded_start_hash(tmp_path):
    R, _, m = _hybrid_tree(tmp_path)
    flat = dict(m, arm="iterative", recon_info={
        "initial_object": "flat (ones)", "iterations": 20,
        "start_object_sha256": object_sha256(np.ones(SHAPE, np.complex64))})
    p = tmp_path / "it.json"
    p.write_text(json.dumps(flat))
    assert check_iterative(_study(), load_records([p]), R)[0]
    flat["recon_info"]["start_object_sha256"] = object_sha256(_truth())
    p.write_text(json.dumps(flat))
    ok, detail = check_iterative(_study(), load_records([p]), R)
    assert not ok and "not a flat object" in detail


def test_snapshot_check(tmp_path):
    _, path, m = _hybrid_tree(tmp_path)
    study = _study()
    assert check_snapshots(study, "scaled", load_records([path]))[0]
    bad = copy.deepcopy(m)
    bad["snapshots"][-1]["metrics"] = _m(0.4)
    path.write_text(json.dumps(bad))
    ok, detail = check_snapshots(study, "scaled", load_records([path]))
    assert not ok and "last snapshot's metrics differ" in detail
    bad = copy.deepcopy(m)
    bad["snapshots"] = bad["snapshots"][:2]
    path.write_text(json.dumps(bad))
    ok, detail = check_snapshots(study, "scaled", load_records([path]))
    assert not ok and "epochs [1, 5], expected [1, 5, 20]" in detail
