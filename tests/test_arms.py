"""ptycho.arms: one arm identity, variants in the study, plugins (module:Class and the entry-point
group ptycho_dose.arms), the external-command arm and the example plugin (examples/)."""

import dataclasses
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import small_study_dict

from ptycho import api
from ptycho.arms import registry
from ptycho.arms.spec import ArmIdentity
from ptycho.config import DataConfig, StudyConfig, arm_gridsize, is_solver_arm
from ptycho.errors import ConfigError, PtychoError
from ptycho.reconstruct.io import read_reconstruction

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ptycho_dose_epie"
PROGRAM = REPO / "tests" / "data" / "external_arm_program.py"
SCALES = {"scaled": {"N": 16, "object_size": [64, 64], "chunk_size": 32,
                     "iterative": {"iterations": 10, "batch_size": 32}},
          "full": {"N": 32, "object_size": [160, 160]}}
needs_ptychi = pytest.mark.skipif(importlib.util.find_spec("ptychi") is None,
                                  reason="pty-chi not installed")


def study_with(variants=None, **over):
    d = small_study_dict(arms=["iterative"], gridsizes=[1], doses=[100000],
                         overlaps={"dense": 0.7}, scales=SCALES, **over)
    if variants is not None:
        d["variants"] = variants
    return api.load_study(d)


def program(mode="ok", **settings):
    return {"arm": "external_command",
            "settings": {"command": ["{python}", str(PROGRAM), "{input}", "{output}", mode],
                         **settings}}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    d = tmp_path_factory.mktemp("arms")
    return api.simulate_cell(study_with(), "scaled", 1e5, "dense", d / "data", figure=False)


@pytest.fixture
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    sys.modules.pop("ptycho_dose_epie", None)


# ------------------------------------------------------------------ identity
def test_arm_ids_are_parsed_and_produced_in_one_place():
    for arm_id, kind, g in [("pinn_g2", "pinn", 2), ("adapted_g3", "adapted", 3),
                            ("baseline", "baseline", 1), ("iterative", "iterative", 1),
                            ("hybrid", "hybrid", 1)]:
        ident = ArmIdentity.parse(arm_id)
        assert (ident.kind, ident.gridsize, ident.variant) == (kind, g, None)
        assert ArmIdentity.builtin_id(kind, g if kind in ("pinn", "adapted") else None) == ident
        assert arm_gridsize(arm_id) == g
        assert is_solver_arm(arm_id) == (kind in ("iterative", "hybrid"))
    for bad in ("pinn_gx", "pinn", "adapted_g", "mine"):
        assert ArmIdentity.try_parse(bad) is None
    with pytest.raises(ConfigError, match="unknown arm id 'mine'"):
        arm_gridsize("mine")
    assert not is_solver_arm("lsqml_poisson")


def test_default_study_has_no_variants_and_records_none():
    s = StudyConfig.from_yaml(REPO / "studies" / "dose_overlap" / "study.yaml")
    assert s.variants == () and "variants" not in s.to_dict()
    assert s.arm_ids == ["pinn_g1", "pinn_g2", "adapted_g2", "baseline", "iterative", "hybrid"]


# ------------------------------------------------------------------ variants
def test_variants_are_arms_beside_the_study_arms():
    s = study_with({"lsqml_poisson": {"arm": "iterative", "settings": {"noise_model": "poisson"}},
                    "ext": program()})
    assert s.arm_ids == ["iterative", "lsqml_poisson", "ext"]
    ident = s.identity("lsqml_poisson")
    assert (ident.kind, ident.is_solver, ident.is_variant, ident.gridsize) == ("iterative", True,
                                                                              True, 1)
    it = s.variant("lsqml_poisson").iterative["scaled"]
    assert it.noise_model == "poisson" and it.iterations == 10 and it.batch_size == 32
    assert s.scale("scaled").iterative.noise_model == "gaussian"  # the base arm is unchanged
    assert s.to_dict()["variants"][0]["name"] == "lsqml_poisson"
    info = api.check_arms(s)
    assert info["ext"]["settings"]["input_format"] == "npz" and info["ext"]["reads"] == ("test",)


@pytest.mark.parametrize("variants, match", [
    ({"v": {"arm": "iterative", "settings": {"noise_model": "cauchy"}}},
     "'variants/v/settings/noise_model'"),
    ({"v": {"arm": "iterative", "settings": {"nosuch": 1}}}, "'variants/v/settings/nosuch'"),
    ({"v": {"arm": "iterative", "settings": {"iterations": 5, "snapshots": [7]}}},
     "variants/v/settings/snapshots"),
    ({"iterative": {"arm": "iterative"}}, "collides with a built-in arm"),
    ({"pinn_g1": {"arm": "iterative"}}, "collides with a built-in arm"),
    ({"v": {"arm": "pinn"}}, "'variants/v/arm' is 'pinn'"),
    ({"V-1": {"arm": "iterative"}}, "variants"),
    # the engine's own rules apply to a variant's merged block
    ({"v": {"arm": "iterative", "settings": {"engine": "epie", "noise_model": "poisson"}}},
     "variants/v/settings .*noise_model"),
    ({"v": {"arm": "iterative", "settings": {"engine": "dm", "refine_positions": True}}},
     "variants/v/settings .*refine_positions"),
    ({"v": {"arm": "iterative", "settings": {"engine": "dm", "step_size": 0.5}}},
     "variants/v/settings .*step_size"),
])
def test_a_wrong_variant_fails_naming_its_key(variants, match):
    with pytest.raises(ConfigError, match=match):
        study_with(variants)


def test_plugin_settings_and_resolution_errors_name_the_variant(example_on_path):
    cases = [
        ({"arm": "ptycho_dose_epie:EPIE", "settings": {"iterations": 0}},
         "variants/v/settings/iterations"),
        ({"arm": "ptycho_dose_epie:EPIE", "settings": {"step": 1}}, "variants/v/settings/step"),
        ({"arm": "ptycho_dose_epie:Nope"}, "variants/v/arm: cannot import"),
        ({"arm": "no_such_plugin"}, "entry point of the group ptycho_dose.arms"),
        ({"arm": "ptycho.config:StudyConfig"}, "not a subclass of ptycho.arms.base.Arm"),
        (program(timeout=3), "variants/v/settings/timeout"),
        ({"arm": "external_command", "settings": {"command": ["{inpt}"]}},
         "variants/v/settings/command/0"),
    ]
    for variant, match in cases:
        with pytest.raises(ConfigError, match=match):
            api.check_arms(study_with({"v": variant}), "s.yaml")


def test_an_arm_that_reads_labels_is_refused_without_ground_truth():
    from ptycho.arms.base import Arm

    class Supervised(Arm):
        reads = ("train", "test", "labels")

    mod = type(sys)("labelled_plugin")
    mod.Supervised = Supervised
    sys.modules["labelled_plugin"] = mod
    try:
        s = study_with({"sup": {"arm": "labelled_plugin:Supervised"}})
        assert api.check_arms(s)["sup"]["reads"] == ("train", "test", "labels")
        gt_free = dataclasses.replace(s, data=DataConfig(source="external", ground_truth=False,
                                                         cells=()))
        with pytest.raises(ConfigError, match="variants/sup: .*ground-truth labels"):
            api.check_arms(gt_free, "s.yaml")
    finally:
        sys.modules.pop("labelled_plugin")


# ------------------------------------------------------------------ plugins
def test_entry_point_and_module_class_reach_the_same_plugin(example_on_path, monkeypatch, cell,
                                                            tmp_path):
    ep = importlib.metadata.EntryPoint(name="epie_numpy", value="ptycho_dose_epie:EPIE",
                                       group=registry.GROUP)
    real = importlib.metadata.entry_points

    def fake(**kw):
        return [ep] if kw.get("group") == registry.GROUP else real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    settings = {"iterations": 4}
    s = study_with({"by_ep": {"arm": "epie_numpy", "settings": settings},
                    "by_path": {"arm": "ptycho_dose_epie:EPIE", "settings": settings}})
    assert registry.resolve("epie_numpy") is registry.resolve("ptycho_dose_epie:EPIE")
    metrics = {}
    for name in ("by_ep", "by_path"):
        rec = api.run_arm(s, "scaled", name, cell.test, tmp_path / f"{name}.h5", overlap="dense")
        assert rec.arm == name and rec.info["iterations"] == 4
        metrics[name] = api.evaluate(tmp_path / f"{name}.h5", cell.test, tmp_path / name,
                                     study=s).metrics
    assert metrics["by_ep"] == metrics["by_path"]
    # ePIE on the 1e5 dense cell: a real reconstruction, far better than the flat start
    assert metrics["by_ep"]["amplitude"]["ssim"] > 0.6


@needs_ptychi
def test_the_plugin_path_and_the_builtin_path_give_equal_metrics(cell, tmp_path):
    """The built-in iterative arm through api.reconstruct and the same class reached as a plugin
    (module:Class) score the same on the same split."""
    s = study_with({"as_plugin": {"arm": "ptycho.arms.builtin:IterativeArm"}})
    api.reconstruct(s, "scaled", "iterative", cell.test, tmp_path / "builtin.h5")
    api.run_arm(s, "scaled", "as_plugin", cell.test, tmp_path / "plugin.h5")
    a = api.evaluate(tmp_path / "builtin.h5", cell.test, tmp_path / "eb", study=s)
    b = api.evaluate(tmp_path / "plugin.h5", cell.test, tmp_path / "ep", study=s)
    assert (a.arm, b.arm) == ("iterative", "as_plugin")
    assert a.metrics == b.metrics and a.metrics["phase"]["ssim"] > 0.3


def test_a_failing_plugin_fails_with_one_line_and_writes_nothing(cell, tmp_path):
    from ptycho.arms.base import Arm

    class Broken(Arm):
        trains = True
        reads = ("train", "test")

        def train(self, train_path, model_dir):
            (Path(model_dir) / "weights.npy").write_bytes(b"half")

        def reconstruct(self, test_path, *, model_dir=None, start_path=None):
            raise ValueError("diverged at step 3\nsecond line")

    mod = type(sys)("broken_plugin")
    mod.Broken = Broken
    sys.modules["broken_plugin"] = mod
    try:
        s = study_with({"broken": {"arm": "broken_plugin:Broken"}})
        out = tmp_path / "recon" / "broken.h5"
        with pytest.raises(PtychoError) as exc:
            api.run_arm(s, "scaled", "broken", cell.test, out, train_path=cell.train,
                        model_dir=tmp_path / "models" / "broken")
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith("arm 'broken' (broken_plugin:Broken)")
        assert "ValueError: diverged at step 3" in msg
        assert not out.exists() and not any(out.parent.glob("*")) if out.parent.exists() else True
        assert list((tmp_path / "models").iterdir()) == [tmp_path / "models" / "broken"]
    finally:
        sys.modules.pop("broken_plugin")


# ------------------------------------------------------------------ external command
def _leftovers():
    return set(Path(tempfile.gettempdir()).glob("ptycho-external-*"))


def test_external_command_arm_writes_the_reconstruction_file(cell, tmp_path):
    s = study_with({"ext": program()})
    before = _leftovers()
    rec = api.run_arm(s, "scaled", "ext", cell.test, tmp_path / "ext.h5", overlap="dense")
    back = read_reconstruction(tmp_path / "ext.h5")
    assert back.arm == "ext" and back.overlap_view == "dense" and back.dose == 1e5
    assert back.object.shape == (64, 64) and np.all(back.weight >= 0) and back.weight.max() > 0
    lit = back.weight > 0
    # the program saw a flat start (ones), never the ground truth, and applied its phase ramp
    assert np.allclose(np.abs(back.object[lit]), 1.0, atol=1e-6)
    assert back.info["input_format"] == "npz" and rec.wall_time_s > 0
    assert _leftovers() == before
    # api.reconstruct with a variant's id goes the same way
    r = api.reconstruct(s, "scaled", "ext", cell.test, tmp_path / "ext2.h5", overlap="dense")
    assert (r.arm, r.n_patterns) == ("ext", back.n_patterns)
    assert np.array_equal(read_reconstruction(r.path).object, back.object)


@pytest.mark.parametrize("mode, settings, match", [
    ("fail", {}, "exited with status 3: something went wrong in the program"),
    ("sleep", {"timeout_s": 1}, "ran past timeout_s = 1 s and was killed"),
    ("child", {"timeout_s": 1}, "ran past timeout_s = 1 s and was killed"),
    ("garbage", {}, "not an NPZ file with key 'object'"),
    ("nan", {}, "NaN or inf"),
])
def test_external_command_failures_fail_the_arm(cell, tmp_path, mode, settings, match):
    s = study_with({"ext": program(mode, **settings)})
    before = _leftovers()
    out = tmp_path / "ext.h5"
    with pytest.raises(PtychoError, match=match) as exc:
        api.run_arm(s, "scaled", "ext", cell.test, out)
    assert str(exc.value).startswith("arm 'ext'") and "\n" not in str(exc.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert _leftovers() == before


def test_external_command_ptychodus_formats(cell, tmp_path):
    """The test split as a ptychodus pair, the result as a ptychodus product (the program here
    returns its input product: a flat object). Without ptychodus the study is refused."""
    v = program(input_format="ptychodus", output_format="ptychodus")
    v["settings"]["command"] = v["settings"]["command"][:4]
    s = study_with({"ext": v})
    if importlib.util.find_spec("ptychodus") is None:
        with pytest.raises(ConfigError, match="variants/ext/settings: the ptychodus format needs"):
            api.check_arms(s)
        return
    rec = api.run_arm(s, "scaled", "ext", cell.test, tmp_path / "ext.h5")
    assert rec.arm == "ext" and rec.object.shape == (64, 64)
    assert np.allclose(np.abs(rec.object), 1.0, atol=1e-6)  # a flat start, not the truth


def test_external_command_kills_the_programs_children_on_timeout(cell, tmp_path):
    s = study_with({"ext": program("child", timeout_s=1)})
    mine = {p for p in os.listdir("/proc") if p.isdigit()}
    with pytest.raises(PtychoError, match="killed"):
        api.run_arm(s, "scaled", "ext", cell.test, tmp_path / "ext.h5")

    def alive():
        """The program and its sleeping child, if any still runs (zombies and exiting processes
        excepted: SIGKILL is sent to the whole group, but on a busy machine the kernel may take a
        moment to tear a grandchild down after the program itself has been reaped)."""
        left = []
        for p in set(os.listdir("/proc")) - mine:
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes()
                state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X") and (b"time.sleep(300)" in cmd
                                            or str(PROGRAM).encode() in cmd):
                left.append(p)
        return left

    deadline = time.monotonic() + 10.0  # far below the child's 300 s: a survivor is not missed
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


# ------------------------------------------------------------------ through the workflow
@pytest.mark.slow
@needs_ptychi
def test_variants_run_through_the_workflow_and_are_scored_like_every_arm(tmp_path):
    """A tiny study with a plugin (the example, module:Class) and an external command beside the
    iterative arm: both appear in metrics.csv, the tables, the verification and the inventory."""
    import csv
    import json

    from test_workflow import make_workdir, snakemake

    study = {
        "study": "tinyvar", "arms": ["iterative"], "gridsizes": [1], "doses": [100000],
        "overlaps": {"dense": 0.7}, "seeds": {"simulation": 5, "grouping": 6, "training": 7},
        "variants": {"epie_numpy": {"arm": "ptycho_dose_epie:EPIE",
                                    "settings": {"iterations": 10}},
                     "ext_prog": program()},
        "scales": {"scaled": {"N": 16, "object_size": [64, 64], "chunk_size": 64,
                              "iterative": {"iterations": 10, "batch_size": 32}},
                   "full": {"N": 32, "object_size": [128, 128]}},
    }
    wd = make_workdir(tmp_path, study)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(EXAMPLE), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                     if p])}
    r = snakemake(wd, "--cores", "2", "phase_g_scaled", env=env)
    assert r.returncode == 0, r.stderr[-6000:]
    root = wd / "results" / "tinyvar" / "scaled"
    arms = ("iterative", "epie_numpy", "ext_prog")
    with open(root / "report" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["arm"] for row in rows} == set(arms)
    ssim = {row["arm"]: float(row["value"]) for row in rows
            if row["quantity"] == "amplitude" and row["metric"] == "ssim"}
    assert ssim["epie_numpy"] > 0.6 and ssim["ext_prog"] < 0.3  # ePIE works; a flat object not
    report = json.loads((root / "report" / "verification_report.json").read_text())
    assert report["passed"] is True
    checks = {c["name"]: c["detail"] for c in report["checks"]}
    assert "3 arms (iterative, epie_numpy, ext_prog) complete" in checks["grid_complete"]
    inventory = (root / "report" / "artifact_inventory.txt").read_text()
    summary = (root / "report" / "summary.md").read_text()
    for a in arms[1:]:
        assert f"recon/{a}/1e5_dense_r0.h5" in inventory and f"eval/{a}/1e5_dense_r0" in inventory
        assert f"benchmarks/run_arm/{a}/1e5_dense_r0.tsv" in inventory
        assert a in summary
        assert read_reconstruction(root / "recon" / a / "1e5_dense_r0.h5").arm == a


def test_a_training_plugin_trains_into_its_model_directory(cell, tmp_path):
    """A plugin that trains: its model directory appears only complete (no hidden partial
    directory stays), and reconstruct reads what train wrote."""
    from ptycho.arms.base import Arm

    class MeanCounts(Arm):
        reads = ("train", "test")
        trains = True

        def train(self, train_path, model_dir):
            with self.open_test(train_path) as ds:
                mean = float(np.mean([c.sum() for _, c in ds.iter_batches(256)]))
            np.save(Path(model_dir) / "mean.npy", mean)

        def reconstruct(self, test_path, *, model_dir=None, start_path=None):
            mean = float(np.load(Path(model_dir) / "mean.npy"))
            with self.open_test(test_path) as ds:
                obj = np.ones(ds.object_shape, np.complex64)
            return self.result(test_path, obj, wall_time_s=0.1, info={"mean_counts": mean})

    mod = type(sys)("training_plugin")
    mod.MeanCounts = MeanCounts
    sys.modules["training_plugin"] = mod
    try:
        s = study_with({"mean": {"arm": "training_plugin:MeanCounts"}})
        assert api.check_arms(s)["mean"]["trains"] is True
        models = tmp_path / "models"
        rec = api.run_arm(s, "scaled", "mean", cell.test, tmp_path / "mean.h5",
                          train_path=cell.train, model_dir=models / "mean")
        assert rec.info["mean_counts"] > 0 and (models / "mean" / "mean.npy").is_file()
        assert [p.name for p in models.iterdir()] == ["mean"]
        with pytest.raises(PtychoError, match="needs train_path and model_dir"):
            api.run_arm(s, "scaled", "mean", cell.test, tmp_path / "m2.h5")
    finally:
        sys.modules.pop("training_plugin")
