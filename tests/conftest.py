import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One BLAS thread for the unit tests' small problems (set before NumPy loads OpenBLAS): with two,
# ARPACK in the phase synchronisation measured 13 s of CPU instead of 1.1 s on a busy 2-core
# machine (OpenBLAS threads spinning on tiny products). Workflow jobs set their own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run_worker(script: Path, out: Path, *args: str, timeout: int = 600) -> dict:
    """Run a test worker script (pty-chi away from this process's TensorFlow) with ``out`` and
    ``args``; it writes ``out/results.json``, returned as a dict. A failure shows its stderr."""
    proc = subprocess.run([sys.executable, str(script), str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"worker {Path(script).name} failed:\n{proc.stderr[-4000:]}"
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def golden_path() -> Path:
    p = SHARED / "golden" / "forward_small.h5"
    if not p.exists():
        pytest.skip(f"golden file {p} not present")
    return p


def small_study_dict(**over):
    """A small, fast study (N = 16, 96 x 80 object) used by the unit tests."""
    d = {
        "study": "unit",
        "arms": ["pinn", "baseline"],
        "gridsizes": [1, 2],
        "doses": [1000, 100000],
        "overlaps": {"dense": 0.7, "sparse": 0.2},
        "scales": {
            "scaled": {"N": 16, "object_size": [96, 80], "chunk_size": 32},
            "full": {"N": 32, "object_size": [160, 160]},
        },
    }
    d.update(over)
    return d


@pytest.fixture
def small_study():
    from ptycho.config import StudyConfig

    return StudyConfig.from_dict(small_study_dict())


# The longest test files first: the two test workers (pytest-xdist, one file per worker at a
# time) start on them and share the short files afterwards, instead of meeting both at the end.
LONGEST_FIRST = ("test_workflow.py", "test_training_resunet.py", "test_arms.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``results/tiny/scaled`` of the tiny end-to-end study (``tests/data/tiny_study.yaml``), run
    once per test session: the first test worker that needs it runs it under a file lock, the
    others wait and reuse it (about 2 min when idle). Tests that change files work on a copy."""
    import fcntl

    from test_workflow import TINY, make_workdir, snakemake

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    wd, lock = base / "tiny_e2e", base / "tiny_e2e.lock"
    done, failed = wd / "done.txt", wd / "failed.txt"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if not done.exists() and not failed.exists():
            make_workdir(wd, TINY)
            r = snakemake(wd, "--cores", "2", "phase_g_scaled", timeout=1800)
            if r.returncode == 0:
                done.write_text("ok\n")
            else:
                failed.write_text(f"snakemake failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")
    if failed.exists():
        pytest.fail(failed.read_text())
    return wd / "results" / "tiny" / "scaled"
