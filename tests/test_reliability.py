"""Bad input and faults: every case stops early with one line naming the file, key or value and
what was expected, and leaves no file behind; interrupted writers' leftovers are recognised,
removed and never listed; concurrent runs on one results root are refused.

``BAD_INPUTS`` is one table of every bad input: study files (checked by ``prepare_study`` when the
workflow is parsed, or by ``check_scale`` when its DAG is built: before any job either way) and
data a job meets (a test split with negative counts, train positions outside the object, a bundle
of another arm, a corrupt model, a full disk). tests/test_workflow.py runs some of its study rows
through Snakemake itself.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO, small_study_dict

from ptycho.config import StudyConfig
from ptycho.data.generate import simulate_cell
from ptycho.data.io import atomic_path, is_partial, lock_directory, remove_partial_files
from ptycho.data.preflight import check_scale, prepare_study
from ptycho.errors import PtychoError, StorageError

TINY = REPO / "tests" / "data" / "tiny_study.yaml"


# ------------------------------------------------------------------------------ study inputs
def tiny_dict() -> dict:
    return yaml.safe_load(TINY.read_text())


def _object_file(path: Path, amp: np.ndarray) -> str:
    phase = np.linspace(-1, 1, amp.size).reshape(amp.shape)
    np.savez(path, objectGuess=(amp * np.exp(1j * phase)).astype(np.complex64))
    return str(path)


def _probe_file(path: Path, probe: np.ndarray) -> str:
    with h5py.File(path, "w") as f:
        f["probe"] = probe.astype(np.complex64)
    return str(path)


def _two_pixel_probe(N: int = 16) -> np.ndarray:
    """A probe whose 90%-energy disc has a 2-pixel diameter (the simulated one: 5.7 px)."""
    p = np.zeros((N, N), np.complex64)
    p[N // 2, N // 2], p[N // 2, N // 2 + 1] = 1.0, 0.5
    return p


def _set(d: dict, path: str, value) -> dict:
    keys = path.split("/")
    node = d
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return d


def study_edit(*pairs):
    """A row maker: set ``key/path`` to value (a callable gets the row's tmp dir) in the tiny study."""
    def make(tmp: Path) -> str:
        d = tiny_dict()
        for key, value in pairs:
            _set(d, key, value(tmp) if callable(value) else value)
        path = tmp / "study.yaml"
        path.write_text(yaml.safe_dump(d))
        return str(path)
    return make


def study_text(text: str):
    def make(tmp: Path) -> str:
        path = tmp / "study.yaml"
        path.write_text(textwrap.dedent(text))
        return str(path)
    return make


ALIAS_BOMB = """\
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
    study: tiny
    description: *i
    arms: [iterative]
    doses: [1000]
    overlaps: {dense: 0.7}
    scales: {scaled: {N: 16, object_size: [64, 64]}, full: {N: 32, object_size: [128, 128]}}
"""


# ------------------------------------------------------------------------------ job inputs
@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """A simulated 1e5 dense cell of the unit study (N = 16, 96 x 80 object)."""
    d = tmp_path_factory.mktemp("reliability_cell")
    study = StudyConfig.from_dict(small_study_dict())
    simulate_cell(study, "scaled", "1e5", "dense", d / "train.h5", d / "test.h5")
    return SimpleNamespace(study=study, train=d / "train.h5", test=d / "test.h5")


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _edit_h5(path: Path, key: str, fn) -> None:
    with h5py.File(path, "r+") as f:
        data = f[key][()]
        f[key][...] = fn(data)


def _bundle(path: Path, arm: str) -> Path:
    g = 2 if arm == "pinn_g2" else 1
    path.write_text(json.dumps({
        "arm": arm, "gridsize": g, "N": 16, "dose": 1e5, "normalisation": {"norm": 1.0},
        "seeds": {"grouping": 7, "training": 11}, "config": {"neighbours": 7},
    }))
    return path


def run_train(arm: str, edit=None):
    """A row runner: train ``arm`` on a copy of the cell's train split after ``edit``."""
    def run(tmp: Path, cell) -> Path:
        from ptycho.training.fit import train_arm

        train = _copy(cell.train, tmp / "train.h5")
        if edit:
            edit(train)
        out = tmp / "out"
        train_arm(arm, train, cell.study, "scaled", out / "model.keras", out / "bundle.json",
                  out / "history.csv", out / "loss.png")
        return out
    return run


def run_reconstruct(bundle_arm: str = "pinn_g1", expected_arm: str = "pinn_g1", edit=None,
                    model: bytes = b""):
    """A row runner: reconstruct a copy of the cell's test split (after ``edit``) with a bundle of
    ``bundle_arm`` and a model file holding ``model``, as the rule of ``expected_arm`` does."""
    def run(tmp: Path, cell) -> Path:
        from ptycho.reconstruct.inference import reconstruct_network
        from ptycho.reconstruct.io import write_reconstruction

        test = _copy(cell.test, tmp / "test.h5")
        if edit:
            edit(test)
        model_path = tmp / "model.keras"
        model_path.write_bytes(model)
        out = tmp / "out"
        out.mkdir()
        rec = reconstruct_network(model_path, _bundle(tmp / "bundle.json", bundle_arm), test, 16,
                                  tmp_dir=out, expected_arm=expected_arm)
        write_reconstruction(out / "recon.h5", rec)
        return out
    return run


def _truncated_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps({"x": list(range(2000))}))
        z.writestr("model.weights.h5", bytes(range(256)) * 64)
    data = bytearray(buf.getvalue())
    data[200:260] = bytes(60)  # damage the compressed config: its CRC no longer matches
    return bytes(data)


def run_full_disk(tmp: Path, cell) -> Path:
    """A real dataset writer (h5py, via ``run_job``) in a process whose file size limit is 20 kB:
    the kernel refuses the write (EFBIG) as it refuses one on a full disk (ENOSPC)."""
    out = tmp / "out"
    code = textwrap.dedent(f"""
        import resource, signal, types
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
        from conftest import small_study_dict
        from ptycho.config import StudyConfig
        from ptycho.data.generate import simulate_cell
        from ptycho.runner import run_job
        study = StudyConfig.from_dict(small_study_dict())
        smk = types.SimpleNamespace(log=[], threads=1, rule="simulate_dataset")
        run_job(smk, lambda s: simulate_cell(study, "scaled", "1e5", "dense",
                                             {str(out / 'train.h5')!r}, {str(out / 'test.h5')!r}))
    """)
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    errors = [ln for ln in r.stderr.splitlines() if " ERROR " in ln]
    assert r.returncode == 1 and len(errors) == 1, r.stderr[-2000:]
    raise PtychoError(errors[0].split(" ERROR ptycho: ", 1)[1])


@dataclass
class Case:
    """One bad input: ``make`` writes a study file (stage 'study': checked when the workflow is
    parsed; 'scale': when its DAG is built), or ``run`` runs a job's library call on bad data
    (stage 'job') and returns the job's output directory."""

    expect: list[str]
    make: object = None
    run: object = None
    workflow: bool = False  # also run through Snakemake in tests/test_workflow.py
    stage: str = "study"
    extra: dict = field(default_factory=dict)


def _uint8_object(tmp):
    return _object_file(tmp / "obj.npz", np.arange(64 * 64).reshape(64, 64) % 256)


BAD_INPUTS = {
    # ---- the study file itself
    "yaml_alias_bomb": Case(["study.yaml", "more than 100000 values"], study_text(ALIAS_BOMB),
                            workflow=True),
    "yaml_recursive_alias": Case(["study.yaml", "more than 100000 values"],
                                 study_text("study: tiny\ndescription: &r [*r]\n")),
    "yaml_syntax": Case(["study.yaml", "not valid YAML"], study_text("study: [tiny\n")),
    "yaml_not_a_mapping": Case(["study.yaml", "expected a mapping"], study_text("- tiny\n")),
    "study_file_too_large": Case(["study.yaml", "bytes; expected at most"],
                                 study_text("# padding\n" * 120_000)),
    "dose_nan": Case(["'doses/1'", "nan is not a finite number"],
                     study_edit(("doses", [1000, float("nan")])), workflow=True),
    "dose_inf": Case(["'doses/0'", "inf is not a finite number"],
                     study_edit(("doses", [float("inf")]))),
    "learning_rate_nan": Case(["'scales/scaled/training/learning_rate'", "not a finite number"],
                              study_edit(("scales/scaled/training/learning_rate", float("nan")))),
    "overlap_nan": Case(["'overlaps/dense'", "not a finite number"],
                        study_edit(("overlaps/dense", float("nan")))),
    "seed_beyond_int64": Case(["'seeds/simulation'", "maximum of 9223372036854775807"],
                              study_edit(("seeds/simulation", 2**63))),
    "N_not_divisible_by_2_to_depth": Case(
        ["'scales/scaled/training'", "N = 18 must be divisible by 2^depth = 4"],
        study_edit(("scales/scaled/N", 18))),
    "skimage_unknown_image": Case(["'object/amplitude_image'", "'nosuch' is not one of"],
                                  study_edit(("object/amplitude_image", "nosuch"))),
    "skimage_function_that_downloads": Case(["'object/amplitude_image'", "'download_all'"],
                                            study_edit(("object/amplitude_image", "download_all"))),
    "skimage_image_that_downloads": Case(["'object/phase_image'", "'brain' is not one of"],
                                         study_edit(("object/phase_image", "brain"))),
    "skimage_not_an_image": Case(["'object/phase_image'", "'data_dir' is not one of"],
                                 study_edit(("object/phase_image", "data_dir"))),
    # ---- files the study names
    "object_file_missing": Case(
        ["'object/path'", "nope.h5: object file not found"],
        study_edit(("object", lambda t: {"source": "file", "path": str(t / "nope.h5")})),
        workflow=True),
    "object_file_corrupt": Case(
        ["'object/path'", "obj.h5: cannot read object file"],
        study_edit(("object", lambda t: {"source": "file", "path": str(
            _copy_bytes(t / "obj.h5", os.urandom(4096)))}))),
    "object_amplitude_above_one": Case(
        ["'object/path'", "obj.npz: object amplitude reaches 255", "(0, 1]"],
        study_edit(("object", lambda t: {"source": "file", "path": _uint8_object(t)}))),
    "object_file_nan": Case(
        ["'object/path'", "obj.npz: object contains NaN or inf"],
        study_edit(("object", lambda t: {"source": "file", "path": _object_file(
            t / "obj.npz", np.where(np.eye(64) > 0, np.nan, 0.5))}))),
    "object_file_3d": Case(
        ["'object/path'", "must be a 2-D array, got shape (2, 64, 64)"],
        study_edit(("object", lambda t: {"source": "file", "path": _object_file(
            t / "obj.npz", np.full((2, 64, 64), 0.5))}))),
    "probe_file_missing": Case(
        ["'probe/path'", "nope.npz: probe file not found"],
        study_edit(("probe", lambda t: {"source": "file", "path": str(t / "nope.npz")}))),
    "probe_file_corrupt": Case(
        ["'probe/path'", "probe.npz: cannot read probe file"],
        study_edit(("probe", lambda t: {"source": "file", "path": str(
            _copy_bytes(t / "probe.npz", b"PK\x03\x04" + os.urandom(500)))}))),
    "probe_file_not_square": Case(
        ["'probe/path'", "probe has shape (16, 20), expected a square"],
        study_edit(("probe", lambda t: {"source": "file", "path": _probe_file(
            t / "probe.h5", np.ones((16, 20)))}))),
    # ---- per scale, when the DAG is built
    "probe_file_of_another_N": Case(
        ["'probe' at scale 'scaled'", "probe.h5: probe has shape (32, 32), expected (16, 16)"],
        study_edit(("probe", lambda t: {"source": "file", "path": _probe_file(
            t / "probe.h5", np.ones((32, 32)))})), workflow=True, stage="scale"),
    "scan_step_under_half_a_pixel": Case(
        ["'overlaps/dense' (f = 0.95) at scale 'scaled'", "step of 0.283 px",
         "steps below half a pixel"],
        study_edit(("overlaps/dense", 0.95)), stage="scale"),
    "scan_step_under_half_a_pixel_file_probe": Case(
        ["'overlaps/dense' (f = 0.8) at scale 'scaled'", "diameter 2.00 px gives a step of 0.400 px",
         "steps below half a pixel"],
        study_edit(("overlaps/dense", 0.8), ("probe", lambda t: {"source": "file", "path":
                                                                 _probe_file(t / "probe.h5",
                                                                             _two_pixel_probe())})),
        stage="scale"),
    # ---- data a job meets
    "test_split_negative_counts": Case(
        ["test.h5: '/diffraction' contains negative counts (pattern 5)"],
        run=run_reconstruct(edit=lambda p: _edit_h5(p, "diffraction", lambda d: _poke(d, 5, -3))),
        stage="job"),
    "test_split_nan_counts": Case(
        ["test.h5: '/diffraction' contains NaN or inf counts (pattern 2)"],
        run=run_reconstruct(edit=lambda p: _edit_h5(p, "diffraction",
                                                    lambda d: _poke(d, 2, np.nan))),
        stage="job"),
    "test_positions_outside_the_object": Case(
        ["test.h5: '/positions': position 0", "outside the 96 x 80 object"],
        run=run_reconstruct(edit=lambda p: _edit_h5(p, "positions", _first_at_corner)),
        stage="job"),
    "train_positions_outside_the_object_pinn": Case(
        ["train.h5: '/positions': position 0", "outside the 96 x 80 object"],
        run=run_train("pinn_g1", lambda p: _edit_h5(p, "positions", _first_at_corner)),
        stage="job"),
    "train_positions_outside_the_object_baseline": Case(
        ["train.h5: '/positions': position 0", "outside the 96 x 80 object"],
        run=run_train("baseline", lambda p: _edit_h5(p, "positions", _first_at_corner)),
        stage="job"),
    "bundle_of_another_arm": Case(
        ["bundle.json: model bundle of arm 'baseline'", "reconstruction is of arm 'pinn_g1'"],
        run=run_reconstruct(bundle_arm="baseline"), stage="job"),
    "model_file_corrupt": Case(
        ["model.keras: cannot load the model: the file is corrupt", "not a readable ZIP"],
        run=run_reconstruct(model=bytes(range(256)) * 8), stage="job"),
    "model_file_damaged_inside": Case(
        ["model.keras: cannot load the model: the file is corrupt"],
        run=run_reconstruct(model=_truncated_zip()), stage="job"),
    "disk_full_while_writing": Case(
        ["simulate_dataset failed: ", "train.h5: cannot write: File too large"],
        run=run_full_disk, stage="job"),
}


def _copy_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _poke(d: np.ndarray, k: int, value: float) -> np.ndarray:
    d = d.copy()
    d[k, 3, 4] = value
    return d


def _first_at_corner(pos: np.ndarray) -> np.ndarray:
    pos = pos.copy()
    pos[0] = (2.0, 2.0)  # a 16 x 16 patch centred there starts at pixel -6
    return pos


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_stops_early_with_one_line_and_leaves_nothing(name, tmp_path, cell):
    case = BAD_INPUTS[name]
    before = _files(tmp_path)
    if case.stage == "study":
        path = case.make(tmp_path)
        before = _files(tmp_path)
        with pytest.raises(PtychoError) as info:
            prepare_study(path)
    elif case.stage == "scale":  # the study itself is valid; its scale cannot be simulated
        path = case.make(tmp_path)
        before = _files(tmp_path)
        _, study, _ = prepare_study(path)
        with pytest.raises(PtychoError) as info:
            check_scale(study, "scaled", path)
    else:
        with pytest.raises(PtychoError) as info:
            case.run(tmp_path, cell)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 700, msg
    for fragment in case.expect:
        assert fragment in msg, msg
    # nothing written: the study rows write nothing at all, the job rows no output and no
    # temporary (their output folders are empty if they exist)
    left = _files(tmp_path) - before
    left = {p for p in left if not (tmp_path / p).is_dir()} - {"train.h5", "test.h5",
                                                               "model.keras", "bundle.json"}
    assert not left, left


# ------------------------------------------------------------------------------ storage errors
def test_storage_errors_name_the_file_and_leave_no_temporary(tmp_path):
    target = tmp_path / "res" / "summary.txt"
    with (pytest.raises(StorageError, match=r"summary.txt: cannot write: No space left on device"),
          atomic_path(target) as tmp):
        assert is_partial(tmp.name)
        with open("/dev/full", "w") as fh:  # the kernel's ENOSPC
            fh.write("x" * 10)
    assert list((tmp_path / "res").iterdir()) == []


def test_run_job_turns_a_storage_oserror_into_one_line(tmp_path, capsys, monkeypatch):
    from ptycho.runner import run_job

    def main(smk):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(tmp_path / "m.json"))

    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit) as info:
        run_job(SimpleNamespace(log=[], threads=1, rule="evaluate_arm"), main)
    assert info.value.code == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "ERROR" in ln]
    assert len(errors) == 1
    assert errors[0].endswith(f"evaluate_arm failed: {tmp_path / 'm.json'}: cannot write: "
                              "Disk quota exceeded")


# ------------------------------------------------------------------------------ leftovers
def _python(code: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(pred, proc, timeout=60.0):
    t0 = time.monotonic()
    while not pred():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


def test_sigterm_removes_the_temporary_sigkill_leaves_one_the_next_run_removes(tmp_path):
    """SIGTERM (Snakemake stopping a job) unwinds the job; SIGKILL leaves the hidden temporary,
    which ``remove_partial_files`` (run by the workflow at start) removes."""
    code = f"""
        import time, types
        from ptycho.data.io import atomic_path
        from ptycho.runner import run_job
        def main(smk):
            with atomic_path({str(tmp_path / 'r' / 'out.h5')!r}) as tmp:
                tmp.write_bytes(b"half")
                print("writing", flush=True)
                time.sleep(60)
        run_job(types.SimpleNamespace(log=[], threads=1, rule="job"), main)
    """
    out = tmp_path / "r"
    for sig, code_expected in ((signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, None)):
        proc = _python(code)
        # the job is mid-write (its temporary in hand, inside the with block) when it is stopped
        assert proc.stdout.readline().strip() == "writing", proc.communicate()
        assert any(is_partial(p.name) for p in out.iterdir())
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if code_expected is not None:
            assert proc.returncode == code_expected, err
            assert list(out.iterdir()) == []
    (left,) = list(out.iterdir())
    assert is_partial(left.name) and left.name.startswith(".out.h5.partial-")
    (tmp_path / "r" / "keep.h5").write_bytes(b"a result")
    assert remove_partial_files(tmp_path) == [left]
    assert [p.name for p in out.iterdir()] == ["keep.h5"]


@pytest.mark.parametrize("name,partial", [
    (".test.h5.partial-k2j_x9q0.h5", True), (".metrics.json.partial-abcdefgh.json", True),
    (".test.h5.ab12cd34.h5", True),  # written before the 'partial-' mark
    ("test.h5", False), (".hidden", False), ("a.partial-abcdefgh.h5", False),
    (".x.partial-abc.h5", False),
])
def test_partial_names(name, partial):
    assert is_partial(name) is partial


def test_killed_patch_store_is_removed_a_live_one_is_kept(tmp_path):
    from ptycho.physics.probe import simulated_probe
    from ptycho.reconstruct.patchstore import PatchStore, remove_stale_stores

    code = f"""
        import time, numpy as np
        from ptycho.physics.probe import simulated_probe
        from ptycho.reconstruct.patchstore import PatchStore
        store = PatchStore(simulated_probe(16), (64, 64), 4, directory={str(tmp_path)!r})
        print(store.path, flush=True)
        time.sleep(60)
    """
    proc = _python(code)
    dead = Path(proc.stdout.readline().strip()).parent
    proc.kill()
    proc.wait()
    with PatchStore(simulated_probe(16), (64, 64), 4, directory=tmp_path) as live:
        # creating this store removed the dead one; its own directory survives a sweep
        assert not dead.exists()
        assert remove_stale_stores(tmp_path) == [] and live.path.exists()
    assert list(tmp_path.iterdir()) == []


def test_leftover_temporaries_fail_verification_and_are_never_inventoried(tmp_path):
    from ptycho.reporting.inventory import build_inventory
    from ptycho.reporting.verify import check_no_partial_files

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text("{}")
    assert check_no_partial_files(tmp_path)[0]
    (tmp_path / "eval" / ".aligned.h5.partial-abcd1234.h5").write_bytes(b"half")
    ok, detail = check_no_partial_files(tmp_path)
    assert not ok and "eval/.aligned.h5.partial-abcd1234.h5" in detail
    assert [e[0] for e in build_inventory(tmp_path)] == ["eval/metrics.json"]


# ------------------------------------------------------------------------------ the lock
def test_a_second_run_on_the_same_results_is_refused_naming_the_first(tmp_path):
    held = lock_directory(tmp_path / "results" / "tiny")
    try:
        with pytest.raises(PtychoError, match=rf"run.lock: the results directory is in use by "
                                              rf"another run \(pid {os.getpid()} on "):
            lock_directory(tmp_path / "results" / "tiny")
    finally:
        held.close()
    lock_directory(tmp_path / "results" / "tiny").close()  # free again once released


def test_skimage_images_match_the_schema_and_load_offline():
    from ptycho.config import load_schema
    from ptycho.physics.object import SKIMAGE_IMAGES, _skimage_gray

    assert load_schema()["definitions"]["skimage_image"]["enum"] == list(SKIMAGE_IMAGES)
    for name in SKIMAGE_IMAGES:  # all ship with scikit-image: no download, 2-D grey in [0, 1]
        img = _skimage_gray(name)
        assert img.ndim == 2 and img.min() == 0 and img.max() == 1, name
    with pytest.raises(PtychoError, match="'download_all' is not an image that ships"):
        _skimage_gray("download_all")
