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
    assert s.arm_ids == ["pinn_g1", "pinn_g2", "adapted_g2", "baseline", "iterative"]
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
