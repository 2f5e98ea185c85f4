"""Study configuration: schema validation with defaults, clear errors on bad input."""

import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig, dose_label
from ptycho.errors import ConfigError


def test_default_study_loads(repo):
    s = StudyConfig.from_yaml(repo / "studies/dose_overlap/study.yaml")
    assert s.doses == (1e3, 1e4, 1e5)
    assert s.overlaps == {"dense": 0.7, "sparse": 0.2}
    assert s.gridsizes == (1, 2) and s.neighbours == 7
    assert s.arm_ids == ["pinn_g1", "pinn_g2", "baseline", "iterative"]
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
        ({"scales": {"scaled": {"N": 64, "object_size": [96, 80]}, "full": {"N": 32, "object_size": [160, 160]}}},
         "too large"),
    ],
)
def test_bad_study_errors(over, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig.from_dict(small_study_dict(**over), source="study.yaml")


def test_missing_study_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        StudyConfig.from_yaml(tmp_path / "nope.yaml")


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
