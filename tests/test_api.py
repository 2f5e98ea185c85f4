"""ptycho.api: explicit arguments, typed results, clear errors; the iterative arm beside TensorFlow.
(The README's example is run against the workflow in test_workflow.py.)"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import small_study_dict

from ptycho import api
from ptycho.data.dataset import Dataset
from ptycho.errors import ConfigError

SCALES = {"scaled": {"N": 16, "object_size": [96, 80], "chunk_size": 32,
                     "iterative": {"iterations": 20}},
          "full": {"N": 32, "object_size": [160, 160]}}
STUDY = small_study_dict(arms=["iterative"], scales=SCALES)


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    study = api.load_study(STUDY)
    d = tmp_path_factory.mktemp("api")
    return study, api.simulate_cell(study, "scaled", 1e5, "dense", d / "data", figure=False)


def test_simulate_cell_writes_the_named_files(cell):
    _, c = cell
    assert isinstance(c, api.Cell) and c.train.name == "train.h5" and c.test.name == "test.h5"
    assert (c.test.parent / "summary.json").is_file() and not (c.test.parent / "summary.png").exists()
    assert c.summary["dose_label"] == "1e5" and c.summary["overlap_view"] == "dense"
    with Dataset(c.test) as ds:
        assert ds.dose == 1e5 and ds.split == "test"


def test_api_errors_name_the_problem(cell, tmp_path):
    study, c = cell
    with pytest.raises(ConfigError, match="give out_dir or the train path"):
        api.simulate_cell(study, "scaled", "1e5", "dense")
    with pytest.raises(ConfigError, match="use simulate_cell"):
        api.import_cell(study, "scaled", "1e5", "dense", tmp_path)
    with pytest.raises(ConfigError, match="needs its trained model"):
        api.reconstruct(study, "scaled", "pinn_g1", c.test, tmp_path / "r.h5")
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        api.reconstruct(study, "huge", "iterative", c.test, tmp_path / "r.h5")


def test_iterative_arm_runs_beside_tensorflow(cell, tmp_path, repo):
    """pty-chi after TensorFlow in one process crashes (docs/conventions.md): api.reconstruct
    runs it in a child process and returns the same typed result."""
    _, c = cell
    code = textwrap.dedent(f"""
        import sys
        import tensorflow  # noqa: F401
        from test_api import STUDY
        from ptycho import api
        study = api.load_study(STUDY)
        r = api.reconstruct(study, "scaled", "iterative", {str(c.test)!r}, {str(tmp_path / 'it.h5')!r})
        e = api.evaluate(r.path, {str(c.test)!r}, {str(tmp_path / 'eval')!r})
        print(r.arm, r.info["iterations"], "torch" in sys.modules, e.metrics["phase"]["ssim"])
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       cwd=repo / "tests", check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    arm, iterations, torch_loaded, phase_ssim = p.stdout.split()[-4:]
    assert (arm, iterations, torch_loaded) == ("iterative", "20", "False")
    assert float(phase_ssim) > 0.5  # a real reconstruction of the 1e5 dense cell
    assert np.isfinite(float(phase_ssim))
