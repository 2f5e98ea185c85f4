"""Study configuration: schema validation with defaults, clear errors on bad input."""

import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig, dose_label, snapshot_epochs
from ptycho.errors import ConfigError


def test_default_study_loads(repo):
    s = StudyConfig.from_yaml(repo / "studies/dose_overlap/study.yaml")
    assert s.doses == (1e3, 1e4, 1e5)
    assert s.overlaps == {"dense": 0.7, "sparse": 0.2}
    assert s.gridsizes == (1, 2) and s.neighbours == 7
    assert s.arm_ids == ["pinn_g1", "pinn_g2", "adapted_g2", "baseline", "iterative", "hybrid"]
    assert s.hybrid.start_from == "pinn_g2"
    assert s.scale("scaled").iterative.snapshots == (1, 2, 5, 10, 20, 50, 100)
    assert s.scale("full").iterative.snapshots == (1, 2, 5, 10, 20, 50, 100, 200)
    assert s.scale("full").N == 128 and s.scale("scaled").N < 128
    assert s.dose_labels == ["1e3", "1e4", "1e5"]


def test_defaults_filled():
    s = StudyConfig.from_dict(small_study_dict())
    assert s.scan.pattern == "raster" and s.probe.source == "simulated"
    assert s.scale("scaled").training.epochs >= 1 and s.scale("scaled").iterative.iterations >= 1
    assert s.seeds.simulation >= 0


@pytest.mark.parametrize("value,label", [(1000, "1e3"), (25000, "2.5e4"), (1e5, "1e5"), (50, "5e1"),
                                         (999.99999, "1e3")])
def test_dose_label(value, label):
    assert dose_label(value) == label


@pytest.mark.parametrize(
    "over,match",
    [
        ({"doses": [1000, -5]}, "doses/1"),
        ({"doses": [0]}, "doses/0"),
        ({"doses": []}, "doses"),
        ({"doses": ["1e3"]}, "write 1000"),
        ({"overlaps": {"dense": 1.0}}, "overlaps/dense"),
        ({"overlaps": {"dense": -0.1}}, "overlaps/dense"),
        ({"gridsizes": [3]}, "gridsizes/0"),
        ({"neighbours": 3}, "K = 3"),
        ({"arms": ["pinn", "magic"]}, "arms/1"),
        ({"dosse": [1000]}, "dosse"),
        ({"arms": ["adapted", "baseline"]}, "fine-tunes a trained PINN.*add 'pinn'"),
        ({"arms": ["pinn", "adapted"], "gridsizes": [1], "adaptation": {"gridsize": 2}},
         "'adaptation/gridsize' is 2"),
        ({"scales": {"scaled": {"N": 64, "object_size": [96, 80]}, "full": {"N": 32, "object_size": [160, 160]}}},
         "too large"),
        ({"arms": ["pinn", "hybrid"], "gridsizes": [1], "hybrid": {"start_from": "pinn_g2"}},
         r"'hybrid/start_from' is 'pinn_g2', which is not a network arm.*\['pinn_g1'\]"),
        ({"arms": ["pinn", "hybrid"], "hybrid": {"start_from": "baseline"}}, "hybrid/start_from"),
        ({"arms": ["baseline", "hybrid"]}, "no PINN arm to default to"),
        ({"arms": ["pinn", "hybrid"], "hybrid": {"start_from": "iterative"}},
         "hybrid/start_from"),
        ({"hybrid": {"strat_from": "pinn_g1"}}, "strat_from"),
        ({"scales": {"scaled": {"N": 16, "object_size": [96, 80],
                                "iterative": {"iterations": 50, "snapshots": [1, 60]}},
                     "full": {"N": 32, "object_size": [160, 160]}}},
         r"scales/scaled/iterative/snapshots': epoch 60 is outside 1\.\.50"),
        ({"scales": {"scaled": {"N": 16, "object_size": [96, 80],
                                "iterative": {"snapshots": [0]}},
                     "full": {"N": 32, "object_size": [160, 160]}}},
         "iterative/snapshots/0"),
    ],
)
def test_bad_study_errors(over, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig.from_dict(small_study_dict(**over), source="study.yaml")


def test_missing_study_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        StudyConfig.from_yaml(tmp_path / "nope.yaml")


def test_adapted_arm_id_follows_the_largest_gridsize_or_the_option():
    assert StudyConfig.from_dict(small_study_dict(arms=["pinn", "adapted"])).arm_ids == [
        "pinn_g1", "pinn_g2", "adapted_g2"]
    s = StudyConfig.from_dict(small_study_dict(arms=["adapted", "pinn"], adaptation={"gridsize": 1}))
    assert s.arm_ids == ["adapted_g1", "pinn_g1", "pinn_g2"]
    from ptycho.config import arm_gridsize

    assert arm_gridsize("adapted_g2") == 2 and arm_gridsize("pinn_g1") == 1


def test_adaptation_batch_size_defaults_to_the_training_batch():
    scales = small_study_dict()["scales"]
    s = StudyConfig.from_dict(small_study_dict(arms=["pinn", "adapted"]))
    sc = s.scale("scaled")
    assert sc.adaptation.batch_size is None and sc.adaptation.freeze_encoder is False
    assert sc.adaptation.patterns_per_step(sc.training.batch_size) == sc.training.batch_size
    scales["scaled"]["adaptation"] = {"epochs": 3, "batch_size": 4}
    sc = StudyConfig.from_dict(small_study_dict(arms=["pinn", "adapted"], scales=scales)).scale("scaled")
    assert sc.adaptation.patterns_per_step(sc.training.batch_size) == 4
    for bad, key in (({"batch_size": 0}, "batch_size"), ({"freeze_encoder": "yes"}, "freeze_encoder")):
        scales["scaled"]["adaptation"] = bad
        with pytest.raises(ConfigError, match=key):
            StudyConfig.from_dict(small_study_dict(arms=["pinn", "adapted"], scales=scales))


def test_phase_offset_options():
    scales = small_study_dict()["scales"]
    tc = StudyConfig.from_dict(small_study_dict()).scale("scaled").training
    assert tc.supervised_phase == "offset_free" and tc.align_group_phases is True
    scales["scaled"]["training"] = {"supervised_phase": "absolute"}
    s = StudyConfig.from_dict(small_study_dict(scales=scales))
    assert s.scale("scaled").training.supervised_phase == "absolute"
    scales["scaled"]["training"] = {"supervised_phase": "relative"}
    with pytest.raises(ConfigError, match="supervised_phase"):
        StudyConfig.from_dict(small_study_dict(scales=scales))
    scales["scaled"]["training"] = {"align_group_phases": "yes"}
    with pytest.raises(ConfigError, match="align_group_phases"):
        StudyConfig.from_dict(small_study_dict(scales=scales))
    assert tc.clip_norm is None
    scales["scaled"]["training"] = {"clip_norm": 1.0}
    assert StudyConfig.from_dict(small_study_dict(scales=scales)).scale("scaled").training.clip_norm == 1.0
    for bad in (0, -1.0, "1"):
        scales["scaled"]["training"] = {"clip_norm": bad}
        with pytest.raises(ConfigError, match="clip_norm"):
            StudyConfig.from_dict(small_study_dict(scales=scales))


@pytest.mark.parametrize("gridsizes,arms,start", [([1, 2], ["pinn", "baseline"], "pinn_g2"),
                                                  ([1], ["pinn", "baseline"], "pinn_g1"),
                                                  ([2], ["pinn"], "pinn_g2")])
def test_hybrid_default_start_is_the_largest_pinn_gridsize(gridsizes, arms, start):
    s = StudyConfig.from_dict(small_study_dict(arms=arms + ["iterative", "hybrid"],
                                               gridsizes=gridsizes))
    assert s.hybrid.start_from == start
    assert s.arm_ids[-1] == "hybrid"


def test_hybrid_named_start_and_no_hybrid():
    s = StudyConfig.from_dict(small_study_dict(arms=["pinn", "baseline", "hybrid"],
                                               hybrid={"start_from": "baseline"}))
    assert s.hybrid.start_from == "baseline"
    assert StudyConfig.from_dict(small_study_dict()).hybrid is None


@pytest.mark.parametrize("iterations,requested,expected", [
    (100, None, (1, 2, 5, 10, 20, 50, 100)),
    (20, None, (1, 2, 5, 10, 20)),
    (1, None, (1,)),
    (200, [50, 1], (1, 50, 200)),  # sorted, final epoch added
    (30, [30], (30,)),
])
def test_snapshot_epochs(iterations, requested, expected):
    assert snapshot_epochs(iterations, requested) == expected


def test_replicates_default_one_scaled_three_full(repo):
    s = StudyConfig.from_dict(small_study_dict())
    assert s.scale("scaled").replicates == 1 and s.scale("full").replicates == 3
    d = StudyConfig.from_yaml(repo / "studies/dose_overlap/study.yaml")
    assert d.scale("scaled").replicates == 1 and d.scale("full").replicates == 3
    over = small_study_dict()
    over["scales"]["scaled"]["replicates"] = 4
    assert StudyConfig.from_dict(over).scale("scaled").replicates == 4
    over["scales"]["scaled"]["replicates"] = 0
    with pytest.raises(ConfigError, match="scales/scaled/replicates"):
        StudyConfig.from_dict(over, source="study.yaml")


def test_intervals_and_pixel_size_defaults():
    s = StudyConfig.from_dict(small_study_dict())
    assert (s.intervals.confidence, s.intervals.resamples, s.intervals.block_px) == (0.95, 1000, None)
    assert s.seeds.bootstrap == 13 and s.scale("scaled").pixel_size_m is None
    assert s.equal_fluence is None
    with pytest.raises(ConfigError, match="intervals/confidence"):
        StudyConfig.from_dict(small_study_dict(intervals={"confidence": 1.5}))


def test_equal_fluence_view_is_checked():
    # a raster at step d (1 - f) deposits D / (d (1 - f))^2 per pixel: 1000 photons at f = 0.7
    # match 1000 * (0.8 / 0.3)^2 = 7111 photons at f = 0.2
    ok = small_study_dict(doses=[1000, 7111, 100000], equal_fluence={
        "cells": [{"dose": 1000, "overlap": "dense"}, {"dose": 7111, "overlap": "sparse"}]})
    view = StudyConfig.from_dict(ok).equal_fluence
    assert view.cells == (("1e3", "dense"), ("7.111e3", "sparse")) and view.tolerance == 0.1
    bad = small_study_dict(equal_fluence={
        "cells": [{"dose": 1000, "overlap": "dense"}, {"dose": 100000, "overlap": "sparse"}]})
    with pytest.raises(ConfigError, match="do not share one fluence.*sparse: dose 7111"):
        StudyConfig.from_dict(bad, source="study.yaml")
    off_grid = small_study_dict(equal_fluence={
        "cells": [{"dose": 1000, "overlap": "dense"}, {"dose": 7111, "overlap": "sparse"}]})
    with pytest.raises(ConfigError, match="equal_fluence/cells/1/dose"):
        StudyConfig.from_dict(off_grid)
    unknown = small_study_dict(equal_fluence={
        "cells": [{"dose": 1000, "overlap": "dense"}, {"dose": 1000, "overlap": "medium"}]})
    with pytest.raises(ConfigError, match="equal_fluence/cells/1/overlap"):
        StudyConfig.from_dict(unknown)


def _external(**data):
    cells = [{"dose": d, "overlap": o,
              "train": {"format": "npz", "path": f"{o}_{d}_train.npz"},
              "test": {"format": "ptychodus", "product": "p.h5", "diffraction": "d.h5"}}
             for d in (1000, 100000) for o in ("dense", "sparse")]
    return small_study_dict(arms=["pinn", "iterative"],
                            data={"source": "external", "cells": cells, **data})


def test_external_data_and_geometry_keys():
    s = StudyConfig.from_dict(_external(ground_truth=False))
    assert s.data.external and not s.data.ground_truth and len(s.data.cells) == 4
    cell = s.data.cell("1e5", "sparse")
    assert cell.train.paths == ("sparse_100000_train.npz",)
    assert cell.test.paths == ("p.h5", "d.h5")
    g = StudyConfig.from_dict(small_study_dict()).geometry  # defaults stated in the README
    assert (g.photon_energy_eV, g.detector_distance_m, g.detector_pixel_size_m) == (8000.0, 2.0, 7.5e-5)
    assert not StudyConfig.from_dict(small_study_dict()).data.external


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(arms=["pinn", "baseline"]), "supervised 'baseline'"),
    (lambda d: d["data"]["cells"].pop(), r"no dataset for the grid cells \['1e5_sparse'\]"),
    (lambda d: d["data"]["cells"][0].update(overlap="medium"), "'data/cells/0/overlap' is 'medium'"),
    (lambda d: d["data"]["cells"][0].update(dose=5000), "'data/cells/0/dose' 5000"),
    (lambda d: d["data"]["cells"][1].update(dose=1000, overlap="dense"), "repeats cell 1e3_dense"),
    (lambda d: d["data"]["cells"][0]["test"].pop("product"), "'data/cells/0/test/product' is required"),
    (lambda d: d["data"]["cells"][0]["train"].update(product="x.h5"), "format npz does not use"),
    (lambda d: d["data"]["cells"][0]["train"].update(format="tiff"), "data/cells/0/train/format"),
    (lambda d: d["data"]["cells"][0].pop("train"), "'train' is a required property"),
])
def test_bad_external_data_config(edit, match):
    d = _external(ground_truth=False)
    edit(d)
    with pytest.raises(ConfigError, match=match):
        StudyConfig.from_dict(d, source="study.yaml")


def test_simulated_study_rejects_external_only_keys():
    with pytest.raises(ConfigError, match="needs data/source: external"):
        StudyConfig.from_dict(small_study_dict(data={"ground_truth": False}))
    with pytest.raises(ConfigError, match="only used with data/source: external"):
        StudyConfig.from_dict(small_study_dict(data={"cells": _external()["data"]["cells"]}))
    with pytest.raises(ConfigError, match="geometry/photon_energy_eV"):
        StudyConfig.from_dict(small_study_dict(geometry={"photon_energy_eV": -1}))
