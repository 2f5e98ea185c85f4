"""Evaluation consistent with what each arm refined (docs/robustness.md): half scans of an error
cell keep its inputs (probe modes, true probe and positions, error record), metrics.csv and
robustness.csv say what each arm refined, and the artifact inventory hashes every refined probe
and positions array (checked against the files)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig
from ptycho.data.dataset import Dataset
from ptycho.data.generate import simulate_cell
from ptycho.data.split import interleaved_halves


@pytest.mark.parametrize("level,errors", [
    ("probe25", {"probe": {"kind": "defocus", "levels": [0.25]}}),
    ("jitter1", {"positions": {"jitter_px": [1.0]}}),
    ("modes2p80", {"coherence": {"fractions": [[0.8, 0.2]], "nominal_modes": "all"}}),
])
def test_half_of_an_error_cell_is_an_error_cell(tmp_path, level, errors):
    from ptycho.evaluation.evaluate import model_errors
    from ptycho.reconstruct.io import Reconstruction

    study = StudyConfig.from_dict(small_study_dict(errors=errors))
    tr, te = tmp_path / "train.h5", tmp_path / "test.h5"
    simulate_cell(study, "scaled", "1e5", "dense", tr, te, error_level=level)
    h1, h2 = tmp_path / "h1.h5", tmp_path / "h2.h5"
    n1, n2 = interleaved_halves(te, h1, h2)
    with Dataset(te) as full:
        modes, true_probe, true_pos = full.probe_modes, full.true_probe, full.true_positions
        errs, n = full.errors, full.n
        assert full.has_model_errors
    assert n1 + n2 == n
    for path, idx in ((h1, np.arange(0, n, 2)), (h2, np.arange(1, n, 2))):
        with Dataset(path) as half:
            assert half.errors == errs and half.errors["label"] == level
            assert half.attrs["probe_error"] == pytest.approx(errs["probe_error"])
            np.testing.assert_array_equal(half.probe_modes, modes)
            np.testing.assert_array_equal(half.true_probe, true_probe)
            np.testing.assert_array_equal(half.true_positions, true_pos[idx])
            assert half.has_model_errors
        # the half's model errors are the full scan's nominal errors, measured on its subset
        rec = Reconstruction(object=np.zeros((96, 80), np.complex64),
                             weight=np.zeros((96, 80), np.float32), arm="iterative", gridsize=1,
                             dose=1e5, overlap_view="dense", n_patterns=len(idx), wall_time_s=0.0,
                             source=str(path))
        me = model_errors(rec, path)
        assert me["error_level"] == level and me["refined"] == []
        if level == "probe25":
            assert me["nominal_probe_error"] == pytest.approx(0.25, rel=1e-3)
        elif level == "jitter1":
            assert 0.7 < me["nominal_position_rms_px"] < 1.3  # the subset's RMS of a 1 px jitter
        else:
            assert me["nominal_probe_error"] < 1e-6  # the arms get every mode
    with h5py.File(h1, "r") as f:
        assert ("probe_modes" in f) == (level == "modes2p80")


def test_exact_half_files_are_unchanged(tmp_path):
    study = StudyConfig.from_dict(small_study_dict())
    tr, te = tmp_path / "train.h5", tmp_path / "test.h5"
    simulate_cell(study, "scaled", "1e5", "dense", tr, te)
    interleaved_halves(te, tmp_path / "h1.h5", tmp_path / "h2.h5")
    with h5py.File(tmp_path / "h1.h5", "r") as f:
        assert sorted(f) == ["diffraction", "object", "positions", "probe"]
        assert "errors" not in f.attrs


def _record(refined, level="exact", kind=None):
    class R:  # the field of a metrics record (MetricsRecord) the table reads
        pass

    r = R()
    r.extra = {} if refined is None else {"model_errors": {
        "error_level": None if level == "exact" else level, "error_kind": kind,
        "error_value": 0.25 if kind else 0.0, "refined": refined, "nominal_probe_error": 0.25,
        "nominal_position_rms_px": 1.0, "probe_error": 0.08, "position_rms_px": 0.3}}
    return r


def test_arm_refined_column_and_which_tables_get_it(tmp_path):
    from ptycho.reporting.records import (
        CSV_COLUMNS,
        ERROR_COLUMNS,
        any_refined,
        error_fields,
        read_metrics_csv,
        write_metrics_csv,
    )

    assert ERROR_COLUMNS[-1] == "arm_refined"
    both = error_fields(_record(["probe", "positions"], "probe25", "probe"))
    assert both["arm_refined"] == "probe+positions"
    assert both["arm_probe_error"] == 0.08 and both["arm_position_rms_px"] == 0.3
    probe = error_fields(_record(["probe"]))
    assert probe["arm_refined"] == "probe" and math.isnan(probe["arm_position_rms_px"])
    assert error_fields(_record([]))["arm_refined"] == ""
    assert error_fields(_record(None))["arm_refined"] == ""
    # without ground truth the data errors of the exact cell are unknown, not 0
    no_truth = _record(["probe"])
    no_truth.extra["model_errors"].update(nominal_probe_error=None, nominal_position_rms_px=None,
                                          probe_error=None, position_rms_px=None)
    no_truth.ground_truth = False
    f = error_fields(no_truth)
    assert f["error_value"] == 0.0 and f["arm_refined"] == "probe"
    assert math.isnan(f["data_probe_error"]) and math.isnan(f["arm_probe_error"])
    # a study whose arms refine nothing and has no levels: the plain table
    assert not any_refined([_record(None), _record(None)])
    assert any_refined([_record(None), _record(["positions"])])
    row = {"study": "s", "scale": "scaled", "dose": 1e4, "overlap": "dense", "gridsize": 1,
           "arm": "iterative", "quantity": "amplitude", "metric": "ssim", "value": 0.8,
           "replicate": 0, "fluence": 1.0, "ci_low": 0.79, "ci_high": 0.81,
           **error_fields(_record(["probe", "positions"], "probe25", "probe"))}
    path = tmp_path / "m.csv"
    write_metrics_csv([row], path, errors=True)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS + ERROR_COLUMNS)
    assert lines[1].endswith(",0.08,0.3,probe+positions")
    back = read_metrics_csv(path, levels=True)[0]
    assert back["arm_refined"] == "probe+positions" and back["arm_probe_error"] == 0.08
    # a table written before the column existed is still read (empty: nothing recorded)
    old = tmp_path / "old.csv"
    old.write_text("\n".join(",".join(ln.split(",")[:-1]) for ln in lines) + "\n")
    assert read_metrics_csv(old, levels=True)[0]["arm_refined"] == ""


def test_robustness_table_says_what_each_arm_refined(tmp_path):
    from test_robustness_workflow import _rows

    from ptycho.reporting.robustness import (
        level_losses,
        losses_markdown,
        read_losses_csv,
        write_losses_csv,
    )

    rows = _rows()
    for r in rows:
        r["arm_refined"] = "probe+positions" if r["arm"] == "iterative" else ""
    losses = level_losses(rows)
    by = {(e["error_level"], e["arm"], e["quantity"]): e for e in losses}
    assert by[("probe25", "iterative", "amplitude")]["arm_refined"] == "probe+positions"
    assert by[("probe25", "pinn_g1", "amplitude")]["arm_refined"] == ""
    write_losses_csv(losses, tmp_path / "r.csv")
    back = read_losses_csv(tmp_path / "r.csv")
    assert {b["arm_refined"] for b in back} == {"probe+positions", ""}
    md = losses_markdown(back)
    assert "| refined |" in md[4]
    it = next(ln for ln in md if ln.startswith("| probe25") and "iterative | amplitude" in ln)
    assert it.endswith("| 0.05 | probe+positions |")
    pinn = next(ln for ln in md if ln.startswith("| probe25") and "pinn_g1 | amplitude" in ln)
    assert pinn.endswith("| not refined | nothing |")


def _recon(path, probe=None, positions=None):
    from ptycho.reconstruct.io import Reconstruction, write_reconstruction

    write_reconstruction(path, Reconstruction(
        object=np.ones((8, 8), np.complex64), weight=np.ones((8, 8), np.float32), arm="iterative",
        gridsize=1, dose=1e4, overlap_view="dense", n_patterns=3, wall_time_s=1.0, source="t.h5",
        probe=probe, positions=positions))


def test_inventory_hashes_refined_arrays_and_the_check_verifies_them(tmp_path):
    import hashlib

    from ptycho.reporting.inventory import (
        build_inventory,
        check_inventory,
        read_inventory,
        read_refined,
        refined_entries,
        write_inventory,
    )

    root = tmp_path / "res"
    (root / "recon" / "iterative").mkdir(parents=True)
    (root / "recon" / "pinn_g1").mkdir(parents=True)
    probe = (np.arange(2 * 4 * 4).reshape(2, 4, 4) * (1 + 0.5j)).astype(np.complex64)
    pos = np.arange(6, dtype=np.float64).reshape(3, 2) + 0.25
    _recon(root / "recon" / "iterative" / "c.h5", probe, pos)
    _recon(root / "recon" / "pinn_g1" / "c.h5")  # refined nothing: no line
    entries = build_inventory(root)
    # nothing refined: the inventory is the one written without refined lines
    plain = [e for e in entries if "iterative" not in e[0]]
    assert refined_entries(root, plain) == []
    refined = refined_entries(root, entries)
    assert refined == [
        ("recon/iterative/c.h5", "/positions", hashlib.sha256(pos.tobytes()).hexdigest()),
        ("recon/iterative/c.h5", "/probe", hashlib.sha256(probe.tobytes()).hexdigest())]
    inv = tmp_path / "inventory.txt"
    write_inventory(entries, inv, root=root, refined=refined)
    assert read_refined(inv) == refined and len(read_inventory(inv)) == 2
    assert "refined\trecon/iterative/c.h5\t/probe\t" in inv.read_text()
    assert check_inventory(inv, root) == []
    # an inventory that leaves a refined array out fails the check
    write_inventory(entries, tmp_path / "short.txt", root=root, refined=refined[:1])
    assert check_inventory(tmp_path / "short.txt", root) == [
        "recon/iterative/c.h5/probe: refined array in the file but not in the inventory"]
    # a refined probe changed after the inventory (size kept): the file and the array fail
    with h5py.File(root / "recon" / "iterative" / "c.h5", "r+") as f:
        f["probe"][0, 0, 0] = 7.0
    problems = check_inventory(inv, root)
    assert "recon/iterative/c.h5/probe: sha256 of the stored array differs from the inventory" in problems
    assert any(p.startswith("recon/iterative/c.h5: sha256 differs") for p in problems)
    with pytest.raises(Exception, match="does not match its probe_sha256"):
        refined_entries(root, entries)


def test_adapted_arm_without_ground_truth_hybrid_refused():
    """Without ground truth the adapted arm adapts its PINN to each half scan on its own
    (independent halves); the hybrid arm starts from the whole scan and stays refused."""
    from test_config import _external

    from ptycho.errors import ConfigError

    d = _external(ground_truth=False)
    d["arms"] = ["pinn", "adapted", "iterative"]
    assert "adapted_g2" in StudyConfig.from_dict(d).arm_ids
    d["arms"] = ["pinn", "hybrid"]
    with pytest.raises(ConfigError, match="'hybrid' arm is in 'arms'"):
        StudyConfig.from_dict(d)
