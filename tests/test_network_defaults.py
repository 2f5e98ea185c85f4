"""The network settings that follow the pattern size N (``ptycho.models.spec.network_defaults``):
what the rule gives, that the default study's scaled settings are exactly the rule's at N = 32,
that a study file's explicit values win, and that bad values are still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptycho.config import StudyConfig, read_study_file
from ptycho.errors import ConfigError
from ptycho.models.spec import NETWORK_KEYS, network_defaults, resunet_depth

STUDY = Path(__file__).resolve().parents[1] / "studies" / "dose_overlap" / "study.yaml"


@pytest.mark.parametrize("N,depth", [(8, 1), (16, 1), (24, 2), (32, 2), (48, 3), (64, 3),
                                     (128, 4), (256, 4), (34, 1)])
def test_resunet_depth_keeps_an_8_pixel_bottleneck(N, depth):
    assert resunet_depth(N) == depth
    assert N % 2**depth == 0


@pytest.mark.parametrize("N", [16, 32, 64, 128])
def test_resunet_rule(N):
    assert network_defaults(N, "resunet") == {
        "filters": 16 if N <= 32 else 8, "depth": {16: 1, 32: 2, 64: 3, 128: 4}[N],
        "support": 0.5, "learning_rate": 0.002 if N <= 32 else 0.001,
        "ensemble": 1 if N <= 32 else 3, "epochs": 10 if N <= 32 else 20}
    # the plain CNN keeps its N-independent defaults
    assert network_defaults(N, "cnn") == {"filters": 16, "depth": 3, "support": 1.0,
                                          "learning_rate": 0.001, "ensemble": 1, "epochs": 20}


def _default_study(N=None, object_size=None, drop=NETWORK_KEYS, **training):
    d = read_study_file(STUDY)
    sc = d["scales"]["scaled"]
    if N is not None:
        sc["N"], sc["object_size"] = N, object_size
    sc["training"] = {k: v for k, v in sc["training"].items() if k not in drop}
    sc["training"].update(training)
    return d


def test_default_study_at_N32_is_the_rule_exactly():
    explicit = StudyConfig.from_yaml(STUDY).scale("scaled")
    ruled = StudyConfig.from_dict(_default_study()).scale("scaled")
    assert ruled.N == 32
    assert ruled.training == explicit.training
    tc = ruled.training
    assert (tc.backbone, tc.filters, tc.depth, tc.support, tc.learning_rate) == (
        "resunet", 16, 2, 0.5, 0.002)
    assert StudyConfig.from_dict(_default_study()).to_dict() == \
        StudyConfig.from_yaml(STUDY).to_dict()


def test_edited_N_gets_the_rule_and_explicit_values_win():
    tc = StudyConfig.from_dict(_default_study(64, [512, 448])).scale("scaled").training
    assert (tc.filters, tc.depth, tc.support, tc.learning_rate, tc.ensemble, tc.epochs) == (
        8, 3, 0.5, 0.001, 3, 20)
    # the default study file itself leaves them to the rule: a user who edits N gets it
    d = read_study_file(STUDY)
    d["scales"]["scaled"].update(N=64, object_size=[512, 448])
    tc = StudyConfig.from_dict(d).scale("scaled").training
    assert (tc.filters, tc.depth, tc.learning_rate, tc.ensemble, tc.epochs) == (8, 3, 0.001, 3, 20)
    tc = StudyConfig.from_dict(_default_study(64, [512, 448], epochs=10)).scale("scaled").training
    assert tc.epochs == 10
    tc = StudyConfig.from_dict(_default_study(64, [512, 448], depth=2, support=0.25,
                                              learning_rate=0.001, filters=8)
                               ).scale("scaled").training
    assert (tc.filters, tc.depth, tc.support, tc.learning_rate) == (8, 2, 0.25, 0.001)
    # an explicit null is the rule too
    tc = StudyConfig.from_dict(_default_study(128, [448, 384], depth=None)).scale("scaled").training
    assert tc.depth == 4


def test_a_study_without_network_keys_keeps_the_cnn_defaults():
    from conftest import small_study_dict

    d = small_study_dict()
    d["scales"]["scaled"]["training"] = {}
    tc = StudyConfig.from_dict(d).scale("scaled").training
    assert (tc.backbone, tc.filters, tc.depth, tc.support, tc.learning_rate, tc.epochs) == (
        "cnn", 16, 3, 1.0, 0.001, 20)


@pytest.mark.parametrize("key,value,match", [
    ("filters", 2, "filters"), ("depth", 0, "depth"), ("depth", 6, "depth"),
    ("support", 0.3, "support"), ("learning_rate", 0, "learning_rate"),
    ("learning_rate", "fast", "learning_rate"), ("filters", 8.5, "filters"),
    ("epochs", 0, "epochs"), ("epochs", 2.5, "epochs"),
])
def test_schema_still_rejects_bad_values(key, value, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig.from_dict(_default_study(**{key: value}))


def test_backbone_that_cannot_take_N_is_still_refused():
    with pytest.raises(ConfigError, match="at most 4 downsamplings"):
        StudyConfig.from_dict(_default_study(depth=5))
    with pytest.raises(ConfigError, match="divisible by 2\\^depth"):
        StudyConfig.from_dict(_default_study(36, [320, 320], depth=3))


def test_the_rule_builds_at_N64():
    from ptycho.models.backbones import count_parameters
    from ptycho.models.pinn import build_pinn
    from ptycho.models.spec import BackboneSpec
    from ptycho.physics.probe import simulated_probe

    r = network_defaults(64, "resunet")
    spec = BackboneSpec("resunet", r["filters"], r["depth"], r["support"])
    m = build_pinn(64, 1, 1e5, simulated_probe(64), 3.0, spec)
    assert m.output_shape == (None, 64, 64, 1)
    assert 0 < count_parameters(m) < 1_500_000


def test_the_validated_study_dict_holds_the_values_jobs_train_with():
    from ptycho.config import load_schema, validate_with_defaults

    schema = load_schema("study")
    ruled = validate_with_defaults(_default_study(), schema, "ruled")
    explicit = validate_with_defaults(read_study_file(STUDY), schema, "explicit")
    assert ruled["scales"]["scaled"]["training"] == explicit["scales"]["scaled"]["training"]
    tr = validate_with_defaults(_default_study(64, [512, 448]), schema, "N64")[
        "scales"]["scaled"]["training"]
    assert (tr["filters"], tr["depth"], tr["support"], tr["learning_rate"], tr["epochs"]) == (
        8, 3, 0.5, 0.001, 20)
