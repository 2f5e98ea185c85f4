"""The study's steps as plain Python functions, for notebooks and scripts without Snakemake.

The workflow scripts call these same functions, so a cell run from Python gives the numbers the
workflow gives::

    from ptycho import api

    study = api.load_study("tests/data/tiny_study.yaml")
    cell = api.simulate_cell(study, "scaled", dose=1e5, overlap="dense", out_dir="demo/data")
    model = api.train_arm(study, "scaled", "pinn_g1", cell.train, out_dir="demo/models/pinn_g1")
    recon = api.reconstruct(study, "scaled", "pinn_g1", cell.test, "demo/pinn_g1.h5", model=model)
    result = api.evaluate(recon.path, cell.test, out_dir="demo/eval/pinn_g1")
    print(result.metrics["amplitude"]["ssim"], result.metrics["phase"]["ssim"])

Every function takes explicit arguments (the typed :class:`~ptycho.config.StudyConfig`, a scale
name, paths) and returns a frozen dataclass naming the files it wrote. Output paths are given
one by one, or as ``out_dir`` with the standard names (``train.h5``, ``test.h5``,
``summary.json``, ``summary.png``; ``model.keras``, ``bundle.json``, ``history.csv``,
``loss.png``; ``metrics.json``, ``aligned.h5``). Errors are ``ptycho.errors.PtychoError``
subclasses naming the file, key or value at fault. TensorFlow and pty-chi are imported only by
the functions that need them; the iterative arm runs in a child process when TensorFlow is
already loaded in this one (importing torchvision after TensorFlow crashes, docs/conventions.md).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ptycho.arms.spec import ArmIdentity
from ptycho.child import run_in_child
from ptycho.config import StudyConfig
from ptycho.errors import ConfigError

PathLike = str | Path


@dataclass(frozen=True)
class Cell:
    """One dose x overlap cell's dataset files (and its summary, a JSON-able dict)."""

    train: Path
    test: Path
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainedArm:
    """A trained network arm: its model bundle files and the bundle's content."""

    arm: str
    model: Path
    bundle: Path
    history: Path
    curve: Path
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ReconstructionResult:
    """A reconstruction file of a test split (``ptycho.reconstruct.io`` format)."""

    arm: str
    path: Path
    wall_time_s: float
    n_patterns: int
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """An arm's evaluation: ``metrics`` is the ``metrics`` block of ``metrics.json`` (quantity ->
    metric -> value), ``report`` the whole file."""

    arm: str
    metrics_path: Path
    aligned_path: Path
    metrics: dict
    report: dict


def _out(path, out_dir, name: str, what: str) -> Path:
    if path is not None:
        return Path(path)
    if out_dir is None:
        raise ConfigError(f"give out_dir or the {what} path")
    return Path(out_dir) / name


def load_study(study: PathLike | dict) -> StudyConfig:
    """A study YAML file (or its dict), validated against the schema with defaults filled."""
    if isinstance(study, StudyConfig):
        return study
    if isinstance(study, dict):
        return StudyConfig.from_dict(study)
    return StudyConfig.from_yaml(study)


def _cell_files(out_dir, train, test, summary, figure):
    return (_out(train, out_dir, "train.h5", "train"), _out(test, out_dir, "test.h5", "test"),
            _out(summary, out_dir, "summary.json", "summary"),
            None if figure is False else _out(figure, out_dir, "summary.png", "figure"))


def _finish_cell(summary: dict, train: Path, test: Path, summary_path: Path, figure) -> Cell:
    from ptycho.data.io import write_json

    if figure is not None:
        from ptycho.reporting.dataset_figure import plot_dataset_summary

        plot_dataset_summary(train, test, figure)
    write_json(summary_path, summary)
    return Cell(train=train, test=test, summary=summary)


def simulate_cell(study: StudyConfig, scale: str, dose: float | str, overlap: str,
                  out_dir: PathLike | None = None, *, train=None, test=None, summary=None,
                  figure=None, replicate: int = 0, error_level: str = "") -> Cell:
    """Simulate one cell (``dose``: photons per exposure or its label, ``overlap``: a view of the
    study) into a train and a test dataset file, its ``summary.json`` and ``summary.png``
    (``figure=False``: no figure). ``replicate`` k draws the cell's k-th noise realisation (same
    scan positions; 0 is the study without replicates). ``error_level``: a label of the study's
    model-error levels (``probe25``, ``jitter0.5``, ... : ``study.errors.levels()``), whose
    files tell the arms a nominal probe or nominal positions that differ from the true ones the
    data were made with (docs/robustness.md); '' (default): the exact cell."""
    from ptycho.data.generate import simulate_cell as _simulate

    if study.data.external:
        raise ConfigError(f"study '{study.study}' reads external data (data/source: external); "
                          "use import_cell")
    tr, te, sp, fig = _cell_files(out_dir, train, test, summary, figure)
    return _finish_cell(_simulate(study, scale, dose, overlap, tr, te, replicate=int(replicate),
                                  error_level=error_level or ""), tr, te, sp, fig)


def import_cell(study: StudyConfig, scale: str, dose: float | str, overlap: str,
                out_dir: PathLike | None = None, *, train=None, test=None, summary=None,
                figure=None, replicate: int = 0) -> Cell:
    """Write one cell of a study on external data (``data:``) into dataset files, as
    :func:`simulate_cell` does for a simulated one. External data is one measurement per cell:
    every ``replicate`` holds the same counts (only the training seeds differ)."""
    from ptycho.config import dose_label
    from ptycho.interop.external import import_cell as _import

    if not study.data.external:
        raise ConfigError(f"study '{study.study}' simulates its data; use simulate_cell")
    label = dose if isinstance(dose, str) else dose_label(dose)
    tr, te, sp, fig = _cell_files(out_dir, train, test, summary, figure)
    return _finish_cell(_import(study, scale, label, overlap, tr, te, replicate=int(replicate)),
                        tr, te, sp, fig)


def split_halves(test_path: PathLike, out_dir: PathLike | None = None, *, half1=None,
                 half2=None) -> tuple[Path, Path]:
    """The even and the odd positions of a test split as two test files (``test_half1.h5``,
    ``test_half2.h5``), for the ground-truth-free FRC."""
    from ptycho.data.split import interleaved_halves

    h1 = _out(half1, out_dir, "test_half1.h5", "half1")
    h2 = _out(half2, out_dir, "test_half2.h5", "half2")
    interleaved_halves(test_path, h1, h2)
    return h1, h2


def train_arm(study: StudyConfig, scale: str, arm: str, train_path: PathLike,
              out_dir: PathLike | None = None, *, model=None, bundle=None, history=None,
              curve=None, threads: int = 1, replicate: int = 0) -> TrainedArm:
    """Train a network arm (``pinn_g1``, ``pinn_g2``, ``baseline``) on a train split with the
    study's training settings for ``scale`` (``ptycho.training.fit.train_arm``); ``replicate``:
    the cell replicate of the train split (its own grouping, shuffling and weight seeds)."""
    from ptycho.training.fit import train_arm as _train

    paths = (_out(model, out_dir, "model.keras", "model"),
             _out(bundle, out_dir, "bundle.json", "bundle"),
             _out(history, out_dir, "history.csv", "history"),
             _out(curve, out_dir, "loss.png", "curve"))
    info = _train(arm, train_path, study, scale, *paths, threads=threads,
                  replicate=int(replicate))
    return TrainedArm(arm, *paths, info=info)


def adapt_arm(study: StudyConfig, scale: str, model, test_path: PathLike,
              out_dir: PathLike | None = None, *, out_model=None, bundle=None, history=None,
              curve=None, threads: int = 1, replicate: int = 0) -> TrainedArm:
    """The adapted arm: fine-tune a trained PINN (``model``: a :class:`TrainedArm`, a
    ``(model.keras, bundle.json)`` pair or their directory; it must be the study's
    ``adaptation/gridsize`` PINN) on the counts of a test split, without labels, with the
    study's ``adaptation`` settings for ``scale`` (``ptycho.training.adapt.adapt_arm``)."""
    from ptycho.training.adapt import adapt_arm as _adapt

    sc = study.scale(scale)
    source_model, source_bundle = _model_files(model)
    paths = (_out(out_model, out_dir, "model.keras", "model"),
             _out(bundle, out_dir, "bundle.json", "bundle"),
             _out(history, out_dir, "history.csv", "history"),
             _out(curve, out_dir, "loss.png", "curve"))
    info = _adapt(source_model, source_bundle, test_path, sc.adaptation,
                  sc.adaptation.patterns_per_step(sc.training.batch_size), study.seeds.training,
                  *paths, threads=threads,
                  expected_arm=None if study.adapted_gridsize is None
                  else ArmIdentity.builtin_id("pinn", study.adapted_gridsize).name,
                  replicate=int(replicate))
    return TrainedArm(str(info["arm"]), *paths, info=info)


def _model_files(model) -> tuple[Path, Path]:
    """(model.keras, bundle.json) of a TrainedArm, a (model, bundle) pair, a model directory or a
    model file (its bundle beside it)."""
    if isinstance(model, TrainedArm):
        return model.model, model.bundle
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return Path(model[0]), Path(model[1])
    p = Path(model)
    if p.is_dir():
        return p / "model.keras", p / "bundle.json"
    return p, p.parent / "bundle.json"


def reconstruct(study: StudyConfig, scale: str, arm: str | None, test_path: PathLike,
                out_path: PathLike, *, model=None, threads: int = 1, tmp_dir=None,
                overlap: str | None = None, device: str = "auto", start=None,
                extra_time_s: float = 0.0, extra_info: dict | None = None
                ) -> ReconstructionResult:
    """Reconstruct a test split and write the reconstruction file ``out_path``.

    ``arm`` "iterative": pty-chi LSQML with the study's iterative settings for ``scale`` from a
    flat object; "hybrid": the same from ``start``, a network arm's reconstruction file (the
    study's ``hybrid/start_from`` arm); a network arm (or None: the model's own arm) needs ``model`` (a :class:`TrainedArm`, a
    ``(model.keras, bundle.json)`` pair or their directory) and runs inference, phase
    synchronisation and stitching with the study's ``stitching:`` settings
    (``ptycho.reconstruct.inference.reconstruct_with_study``). ``overlap`` sets the overlap view
    recorded in the file (default: the model's, or the dataset's for the iterative arm).
    ``extra_time_s`` / ``extra_info`` (network arms): time and information added to the
    reconstruction's (the adapted arm's fine-tuning).
    """
    sc = study.scale(scale)
    ident = None if arm is None else study.identity(arm)
    if ident is not None and ident.is_variant:
        run_arm(study, scale, arm, test_path, out_path, start_path=start, overlap=overlap,
                threads=threads, model_dir=None if model is None else Path(model), train=False)
        rec = read_reconstruction_file(out_path)
        return ReconstructionResult(rec.arm, Path(out_path), rec.wall_time_s, rec.n_patterns,
                                    rec.info)
    if ident is not None and ident.is_solver:
        if (arm == "hybrid") != (start is not None):
            raise ConfigError("the hybrid arm needs start= (a network reconstruction file); the "
                              "iterative arm starts flat (no start=)")
        start_arm = None
        if arm == "hybrid":
            if study.hybrid is None:
                raise ConfigError(f"study '{study.study}' has no hybrid arm")
            start_arm = study.hybrid.start_from
        job = {"test": str(test_path), "out": str(out_path), "iterative": asdict(sc.iterative),
               "threads": int(threads), "overlap": overlap, "device": device,
               "start": None if start is None else str(start), "start_arm": start_arm}
        if "tensorflow" in sys.modules:
            return _isolated_iterative(job)
        return _iterative_job(job)
    if model is None:
        raise ConfigError(f"arm '{arm}' is a network: reconstruct needs its trained model "
                          "(model=)")
    from ptycho.models.bundle import read_bundle
    from ptycho.reconstruct.inference import reconstruct_with_study

    model_path, bundle_path = _model_files(model)
    bundle = read_bundle(bundle_path, arm)
    rec = reconstruct_with_study(model_path, bundle_path, test_path, study, scale,
                                 overlap or str(bundle.get("overlap_view", "")), out_path,
                                 threads=threads, tmp_dir=tmp_dir, extra_time_s=extra_time_s,
                                 extra_info=extra_info, expected_arm=arm)
    return ReconstructionResult(rec.arm, Path(out_path), rec.wall_time_s, rec.n_patterns, rec.info)


def read_reconstruction_file(path: PathLike):
    """A reconstruction file (``ptycho.reconstruct.io.Reconstruction``)."""
    from ptycho.reconstruct.io import read_reconstruction

    return read_reconstruction(path)


def run_arm(study: StudyConfig, scale: str, arm: str, test_path: PathLike, out_path: PathLike, *,
            train_path: PathLike | None = None, start_path: PathLike | None = None,
            model_dir: PathLike | None = None, train: bool = True, overlap: str | None = None,
            replicate: int = 0, threads: int = 1):
    """Run one of the study's variants (``variants:``; a built-in kind, a plugin or an external
    command) on a test split into the reconstruction file ``out_path``, training it first into
    ``model_dir`` when the arm trains (``ptycho.arms.registry.run_arm``); returns the
    ``Reconstruction``. The arm's settings are validated first."""
    from ptycho.arms.registry import run_arm as _run

    return _run(study, scale, arm, test_path, out_path, train_path=train_path,
                start_path=start_path, model_dir=model_dir, train=train, overlap=overlap,
                replicate=int(replicate), threads=int(threads))


def check_arms(study: StudyConfig, source: str = "<study>") -> dict:
    """Resolve every variant of the study (plugins imported) and validate its settings
    (``ptycho.arms.registry.check_study_arms``): {name: {'reads', 'trains', 'settings'}}."""
    from ptycho.arms.registry import check_study_arms

    return check_study_arms(study, source)


def _iterative_job(job: dict) -> ReconstructionResult:
    """pty-chi LSQML on ``job['test']`` into ``job['out']`` (a JSON-able job description)."""
    from ptycho.config import IterativeConfig
    from ptycho.reconstruct.io import write_reconstruction
    from ptycho.reconstruct.iterative import load_network_start, reconstruct_iterative

    start = job.get("start")
    start = None if start is None else load_network_start(start, job.get("start_arm"))
    cfg = dict(job["iterative"])
    if cfg.get("snapshots") is not None:
        cfg["snapshots"] = tuple(cfg["snapshots"])
    rec = reconstruct_iterative(job["test"], IterativeConfig(**cfg), threads=job["threads"],
                                device=job["device"], start=start)
    if job["overlap"] is not None:
        rec.overlap_view = job["overlap"]
    write_reconstruction(job["out"], rec)
    return ReconstructionResult(rec.arm, Path(job["out"]), rec.wall_time_s, rec.n_patterns,
                                rec.info)


def _isolated_iterative(job: dict) -> ReconstructionResult:
    """:func:`_iterative_job` in a child process (this one has imported TensorFlow)."""
    from ptycho.reconstruct.io import read_reconstruction

    run_in_child("ptycho.api:_iterative_job", job, f"{job['test']}: iterative reconstruction")
    rec = read_reconstruction(job["out"])
    return ReconstructionResult(rec.arm, Path(job["out"]), rec.wall_time_s, rec.n_patterns,
                                rec.info)


def evaluate(recon_path: PathLike, test_path: PathLike, out_dir: PathLike | None = None, *,
             metrics=None, aligned=None, halves=None, study: StudyConfig | None = None
             ) -> Evaluation:
    """Evaluate a reconstruction of a test split (``ptycho.evaluation.evaluate_reconstruction``):
    against its ground truth, or, without one, ground-truth free with ``halves`` (the arm's
    reconstructions of :func:`split_halves`). ``study`` sets the confidence intervals
    (``intervals``, ``seeds.bootstrap``; defaults without it)."""
    from ptycho.evaluation.evaluate import evaluate_reconstruction

    mp = _out(metrics, out_dir, "metrics.json", "metrics")
    ap = _out(aligned, out_dir, "aligned.h5", "aligned")
    extra = {} if study is None else {"intervals": study.intervals,
                                      "seed": study.seeds.bootstrap}
    record = evaluate_reconstruction(recon_path, test_path, mp, ap,
                                     halves=list(halves) if halves else None, **extra)
    return Evaluation(record.arm, mp, ap, record.metrics, record.to_json())


# ---- the probe a cell's arms are told, refined on its train split (data: probe_source)


@dataclass(frozen=True)
class RefinedProbeResult:
    """A refined-probe file (``ptycho.data.probe_file``) and its figure: ``sha256`` of the refined
    modes, ``info`` the refinement's record (cost history, change, probe errors)."""

    path: Path
    figure: Path | None
    sha256: str
    given_sha256: str
    train_sha256: str
    info: dict = field(default_factory=dict)


def refine_probe(study: StudyConfig, train_path: PathLike, out_path: PathLike, *, figure=None,
                 threads: int = 1, device: str = "auto") -> RefinedProbeResult:
    """Refine the probe of a cell's *train split* with pty-chi LSQML (the study's
    ``data/probe_refinement`` settings, probe refinement on, starting from the file's probe) and
    write the refined-probe file ``out_path`` and, with ``figure`` (a .png path), the given and
    refined probe side by side. Only ``train_path`` is read. Runs in a child process when
    TensorFlow is already imported (docs/conventions.md)."""
    from ptycho.config import ProbeRefinementConfig

    settings = study.data.probe_refinement or ProbeRefinementConfig()
    job = {"train": str(train_path), "out": str(out_path), "settings": asdict(settings),
           "threads": int(threads), "device": device}
    if "tensorflow" in sys.modules:
        run_in_child("ptycho.api:_refine_probe_job", job, f"{train_path}: probe refinement")
    else:
        _refine_probe_job(job)
    from ptycho.data.probe_file import read_probe_file

    rp = read_probe_file(out_path)
    fig = None
    if figure is not None:
        from ptycho.reporting.probe_figure import plot_probe_refinement

        fig = Path(figure)
        plot_probe_refinement(out_path, fig, title=Path(train_path).parent.name)
    return RefinedProbeResult(Path(out_path), fig, rp.sha256, rp.given_sha256, rp.train_sha256,
                              rp.info)


def _refine_probe_job(job: dict) -> None:
    from ptycho.config import ProbeRefinementConfig
    from ptycho.reconstruct.probe_refine import refine_train_probe

    refine_train_probe(job["train"], ProbeRefinementConfig(**job["settings"]), job["out"],
                       threads=job["threads"], device=job["device"])


def apply_probe(probe_path: PathLike, given_train: PathLike, given_test: PathLike,
                out_dir: PathLike | None = None, *, train=None, test=None) -> Cell:
    """A cell's train and test dataset files with the refined probe of ``probe_path`` as their
    nominal ``/probe`` (the given probe kept as ``/given_probe``, hashes recorded;
    ``ptycho.data.probe_file.apply_probe``); ``summary`` holds what each file recorded."""
    from ptycho.data.probe_file import apply_probe as _apply

    tr = _out(train, out_dir, "train.h5", "train")
    te = _out(test, out_dir, "test.h5", "test")
    summary = {"train": _apply(given_train, probe_path, tr),
               "test": _apply(given_test, probe_path, te)}
    return Cell(train=tr, test=te, summary=summary)


__all__ = ["Cell", "Evaluation", "ReconstructionResult", "RefinedProbeResult", "TrainedArm",
           "adapt_arm", "apply_probe", "check_arms", "evaluate", "import_cell", "load_study",
           "read_reconstruction_file", "reconstruct", "refine_probe", "run_arm", "simulate_cell",
           "split_halves", "train_arm"]
