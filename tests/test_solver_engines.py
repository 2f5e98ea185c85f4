"""The iterative arm's pty-chi engines (``iterative.engine``) and their checks.

pty-chi runs in a subprocess (tests/_engine_worker.py; importing torch after TensorFlow
segfaults); the config checks run here directly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from conftest import run_worker

from ptycho.config import ENGINES, IterativeConfig, StudyConfig, check_engine
from ptycho.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_engine_worker.py")
DEFAULT_STUDY = ROOT / "studies" / "dose_overlap" / "study.yaml"

needs_ptychi = pytest.mark.skipif(importlib.util.find_spec("ptychi") is None,
                                  reason='pty-chi not installed (pip install -e ".[iterative]")')


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    return run_worker(WORKER, tmp_path_factory.mktemp("engines"))


# ----------------------------------------------------------------------------- pty-chi (subprocess)
@needs_ptychi
def test_lsqml_options_unchanged_by_engines(worker):
    # the options the LSQML solve is built with, before engines existed (tests/data): equal with
    # no engine key and with engine: lsqml and its default step size written out
    assert worker["options"] == {"default_absent": True, "default_explicit": True,
                                 "poisson_probe_absent": True, "poisson_probe_explicit": True}


@needs_ptychi
def test_lsqml_engine_key_gives_the_same_object(worker):
    r = worker["lsqml"]
    assert r["same_object"] and r["same_snapshots"] and r["info_keys_same"]
    assert r["solver"] == "pty-chi LSQML"


@needs_ptychi
@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_improves_on_the_flat_start(worker, engine):
    r = worker["engines"][engine]
    assert r["costs_finite"] and r["n_costs"] >= 1
    # 10 epochs on a noise-poor (1e5) N = 16 dense cell: every engine fits the data far better
    # than the flat object and its phase is far closer to the truth (measured: residual below
    # 0.3 x the flat start's, phase SSIM above flat + 0.3 for every engine)
    assert r["deviance"] < 0.5 * r["flat_deviance"]
    assert r["phase_ssim"] > r["flat_phase_ssim"] + 0.2
    assert r["amplitude_ssim"] > r["flat_amplitude_ssim"]
    if engine != "lsqml":
        assert r["engine"] == engine and "noise_model" not in r["info"]


@needs_ptychi
def test_engines_with_refinement_run(worker):
    c = worker["combos"]
    assert all(r["finite"] for r in c.values())
    assert c["epie_probe_modes"]["probe_modes"] == 2
    # exact positions: the cross-correlation correction leaves them nearly in place
    assert c["rpie_positions"]["position_change_rms_px"] < 0.2


@needs_ptychi
def test_engine_defaults_recorded(worker):
    from ptycho.reconstruct.iterative import ENGINE_DEFAULTS

    for engine in ("pie", "epie", "rpie", "dm"):
        info = worker["engines"][engine]["info"]
        for key, value in ENGINE_DEFAULTS[engine].items():
            assert info[key] == pytest.approx(value)
    assert "batch_size" in worker["engines"]["dm"]["info"]


# ----------------------------------------------------------------------------- config checks
BASE = {"iterations": 10, "batch_size": 8, "noise_model": "gaussian", "refine_probe": False}


@pytest.mark.parametrize("block, key", [
    ({"engine": "dm", "step_size": 0.5}, "step_size"),
    ({"engine": "lsqml", "object_alpha": 0.2}, "object_alpha"),
    ({"object_alpha": 0.2}, "object_alpha"),  # no engine: LSQML
    ({"engine": "epie", "relaxation": 0.5}, "relaxation"),
    ({"engine": "rpie", "inertia": 0.3}, "inertia"),
    ({"engine": "pie", "inertia": 0.1}, "inertia"),
    ({"engine": "epie", "noise_model": "poisson"}, "noise_model"),
    ({"engine": "dm", "refine_positions": True, "position_correction": "cross_correlation"},
     "refine_positions"),
    ({"engine": "dm", "refine_positions": True}, "refine_positions"),
    ({"engine": "epie", "refine_positions": True}, "position_correction"),  # gradient
    ({"engine": "rpie", "refine_positions": True, "position_correction": "cross_correlation",
      "position_momentum_gain": 0.5}, "position_momentum_gain"),
    ({"engine": "pie", "refine_probe": True}, "refine_probe"),
    ({"engine": "raar"}, "engine"),  # diverges on this study's cells: not offered
    ({"engine": "dm", "relaxation": 1.5}, "relaxation"),
    ({"engine": "dm", "relaxation": 0}, "relaxation"),
    ({"engine": "dm", "inertia": 1.0}, "inertia"),
    ({"engine": "epie", "step_size": 0}, "step_size"),
])
def test_check_engine_names_the_key(block, key):
    with pytest.raises(ConfigError, match=f"here/{key}: "):
        check_engine({**BASE, **block}, "here")


@pytest.mark.parametrize("block", [
    {}, {"engine": "lsqml", "step_size": 0.5, "noise_model": "poisson"},
    {"engine": "epie", "step_size": 0.5, "object_alpha": 0.2, "probe_alpha": 0.3},
    {"engine": "rpie", "refine_positions": True, "position_correction": "cross_correlation"},
    {"engine": "dm", "relaxation": 0.8, "inertia": 0.3, "refine_probe": True},
    {"engine": "dm", "refine_probe": True, "probe_modes": 2},
    {"engine": "epie", "refine_probe": True, "probe_modes": 2},
])
def test_check_engine_accepts(block):
    assert check_engine({**BASE, **block}) == (block.get("engine") or "lsqml")


def test_iterative_validate_config_checks_the_engine():
    from ptycho.reconstruct.iterative import validate_config

    with pytest.raises(ConfigError, match="iterative/relaxation"):
        validate_config(IterativeConfig(**BASE, engine="epie", relaxation=0.5))
    validate_config(IterativeConfig(**BASE, engine="epie", object_alpha=0.5))


def _study(**iterative):
    raw = yaml.safe_load(DEFAULT_STUDY.read_text())
    raw["scales"]["scaled"]["iterative"].update(iterative)
    return raw


def test_study_file_engine_errors_name_the_key():
    with pytest.raises(ConfigError, match="scales/scaled/iterative/step_size"):
        StudyConfig.from_dict(_study(engine="dm", step_size=0.5), "s.yaml")
    with pytest.raises(ConfigError, match="engine"):  # the schema's enum
        StudyConfig.from_dict(_study(engine="autodiff"), "s.yaml")


def test_default_study_resolves_without_engine_keys():
    # no schema defaults: the default study's resolved configuration has none of the new keys
    sc = StudyConfig.from_yaml(DEFAULT_STUDY)
    it = sc.to_dict()["scales"]["scaled"]["iterative"]
    for key in ("engine", "step_size", "object_alpha", "probe_alpha", "relaxation",
                "inertia"):
        assert key not in it
    assert sc.scales["scaled"].iterative.engine is None
    st = StudyConfig.from_dict(_study(engine="epie", object_alpha=0.2), "s.yaml")
    it = st.to_dict()["scales"]["scaled"]["iterative"]
    assert it["engine"] == "epie" and it["object_alpha"] == 0.2 and "relaxation" not in it
