# Config validation, the study grid, wildcard constraints and input helpers.
import errno
import functools
import math
import time
import importlib.util
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from ptycho.arms.registry import check_study_arms
from ptycho.arms.spec import ArmIdentity
from ptycho.config import (
    StudyConfig,
    load_schema,
    validate_with_defaults,
)
from ptycho.data.cells import cell_name, check_cell_names
from ptycho.data.io import lock_directory, remove_partial_files
from ptycho.data.preflight import check_scale, prepare_study, scan_patterns
from ptycho.errors import PtychoError
from ptycho.reconstruct.patchstore import remove_stale_stores
from ptycho.reporting.resources import retry_runtime
from ptycho.study_guard import check_results_owner, record_results_owner
from ptycho.training.cost import network_job_seconds

validate(config, "../schemas/config.schema.yaml")
RESULTS = config.get("results", "results").rstrip("/")
STUDY_FILE = config["study"]

if not Path(STUDY_FILE).is_file():
    raise WorkflowError(f"config 'study': study file {STUDY_FILE} not found")
try:
    # Schema validation with defaults (the same schema snakemake.utils.validate reads), then the
    # typed, cross-checked study. STUDY_DICT is what every job receives as params.study. The
    # object and probe files it names are read and checked now (before any job); STUDY_FILES
    # are inputs of every simulation, so editing one re-simulates.
    STUDY_DICT, STUDY, STUDY_FILES = prepare_study(STUDY_FILE)
except PtychoError as _exc:
    raise WorkflowError(str(_exc))
validate(STUDY_DICT, "../schemas/study.schema.yaml")

_SOLVERS = [a.name for a in STUDY.identities if a.is_solver]
if _SOLVERS and importlib.util.find_spec("ptychi") is None:
    raise WorkflowError(
        f"{STUDY_FILE}: the study names the {' and '.join(repr(a) for a in _SOLVERS)} arm but "
        'pty-chi is not installed; install it with:  pip install -e ".[iterative]"  (or remove '
        f"{' and '.join(_SOLVERS)} from arms)"
    )

STUDY_NAME = STUDY.study
SCALES = ("scaled", "full")
DOSES = STUDY.dose_labels
OVERLAPS = list(STUDY.overlaps)
ARMS = STUDY.arm_ids
IDENTITIES = {a.name: a for a in STUDY.identities}
# the built-in networks (a model bundle and a training history per cell)
TRAINED_ARMS = [a for a, i in IDENTITIES.items() if i.is_network]
# the rule that trains (or adapts) a network arm and reconstructs its test split
NETWORK_RULES = {
    "pinn": "train_pinn",
    "adapted": "adapt_pinn",
    "baseline": "train_baseline",
}
PINN_ARMS = [a for a, i in IDENTITIES.items() if i.kind in ("pinn", "adapted")]
# Variants (variants: in the study): extra arms run by the generic rules of rules/arms.smk. Every
# plugin is imported and its settings validated now, before any job.
try:
    VARIANT_INFO = check_study_arms(STUDY, STUDY_FILE)
except PtychoError as _exc:
    raise WorkflowError(str(_exc))
VARIANTS = list(VARIANT_INFO)
TRAINING_VARIANTS = [v for v in VARIANTS if VARIANT_INFO[v]["trains"]]
RECON_ONLY_VARIANTS = [v for v in VARIANTS if v not in TRAINING_VARIANTS]
# the network arm whose test reconstruction starts the hybrid arm (None without a hybrid arm)
HYBRID_START = STUDY.hybrid.start_from if STUDY.hybrid else None
# Replicate k of a cell draws its own noise, grouping and training seeds (shared scan positions).
REPLICATES = {s: STUDY.scale(s).replicates for s in SCALES}
# Model-error levels (errors: in the study; docs/robustness.md): every (dose, overlap, replicate)
# cell also exists at each non-zero level, named 1e4_dense_probe25_r0. The exact cells keep
# their names (1e4_dense_r0); a study without errors has only those.
ERROR_LEVELS = [lv.label for lv in STUDY.errors.levels()] if STUDY.errors else []
if ERROR_LEVELS and STUDY.data.external:
    raise WorkflowError(
        f"{STUDY_FILE}: 'errors': model-error levels are simulated; a study on external data "
        "(data/source: external) cannot have them"
    )
try:
    check_cell_names(OVERLAPS, ERROR_LEVELS)
except PtychoError as _exc:
    raise WorkflowError(f"{STUDY_FILE}: {_exc}")


def cells(scale, levels=None):
    """Every cell replicate of a scale, as in the CELL pattern: 1e3_dense_r0, 1e3_dense_r1, ...
    then the cells at each error level (1e3_dense_probe25_r0, ...); ``levels``: only these
    level labels ('' the exact cells)."""
    levels = [""] + ERROR_LEVELS if levels is None else levels
    return [
        cell_name(d, o, k, lv)
        for lv in levels
        for d in DOSES
        for o in OVERLAPS
        for k in range(REPLICATES[scale])
    ]


def exact_cells(scale):
    """The cells without model errors: what the grids, curves and per-cell statistics show."""
    return cells(scale, [""])


def error_cells(scale):
    """The cells at a non-zero error level (none without an errors section)."""
    return cells(scale, ERROR_LEVELS)


# Which study file made <results>/<study> (ptycho.study_guard): another study, or a copy of this
# one under the same name, is refused here, before any job (a dry run too); the record is written
# when the run starts.
try:
    STUDY_RECORD = check_results_owner(
        Path(RESULTS) / STUDY_NAME, STUDY_NAME, STUDY_FILE
    )
except PtychoError as _exc:
    raise WorkflowError(str(_exc))


# The lock on this study's results, held by this Snakemake process from onstart to its exit.
RUN_LOCK = []


onstart:
    # Another run on the same results (from another working directory: Snakemake's own lock is
    # per working directory) stops this one before any job. Holding the lock, remove what
    # interrupted writers left: hidden .<name>.partial-* files and stale stitching stores.
    try:
        RUN_LOCK.append(lock_directory(Path(RESULTS) / STUDY_NAME))
    except PtychoError as exc:
        raise WorkflowError(str(exc))
    _left = remove_partial_files(Path(RESULTS) / STUDY_NAME)
    _left += remove_stale_stores(tempfile.gettempdir())
    for _p in _left:
        logger.info(f"removed a leftover temporary of an interrupted job: {_p}")
    if STUDY_RECORD is not None:
        record_results_owner(Path(RESULTS) / STUDY_NAME, STUDY_RECORD)


RUN_STARTED = time.time()


def print_verdicts(stopped=False):
    """End a run with the verdict of each scale it verified, and where the report is (onsuccess;
    onerror with ``stopped``: only a failed verdict written by this run)."""
    from ptycho.reporting.verdict import run_end_lines

    roots = [root(s) for s in SCALES]
    lines = run_end_lines(
        roots, since=RUN_STARTED if stopped else None, failed_only=stopped
    )
    if lines:
        print("\n".join(lines), flush=True)


# Every run ends by releasing the results lock and printing the verification verdict and the
# report's path.
onsuccess:
    for _fh in RUN_LOCK:
        _fh.close()
    print_verdicts()


onerror:
    for _fh in RUN_LOCK:
        _fh.close()
    print_verdicts(stopped=True)


@functools.cache
def _checked_scale(scale):
    """Check the probe and scan geometry of a scale once, when the DAG is built (before any job);
    a probe file fits one N, so this is checked for the scales that are run."""
    try:
        check_scale(STUDY, scale, STUDY_FILE)
    except PtychoError as exc:
        raise WorkflowError(str(exc))
    return True


def study_inputs(wildcards):
    """The object/probe files the study names: inputs of every simulation job."""
    _checked_scale(wildcards.scale)
    return STUDY_FILES


wildcard_constraints:
    study=re.escape(STUDY_NAME),
    scale="|".join(SCALES),
    dose="|".join(re.escape(d) for d in DOSES),
    overlap="|".join(OVERLAPS),
    gridsize="|".join(str(g) for g in STUDY.gridsizes),
    arm="|".join(ARMS),
    replicate=r"\d+",
    # '' (the exact cell) or _<level label>
    level=f"(?:{'|'.join(f'_{re.escape(lv)}' for lv in ERROR_LEVELS)})?",


ROOT = f"{RESULTS}/{{study}}/{{scale}}"
# One grid cell replicate: every per-cell path and log holds it (data, models, recon, eval).
# {level}: '' for the exact cell, _probe25 (an underscore and the label) at an error level.
CELL = "{dose}_{overlap}{level}_r{replicate}"

# The probe the arms are told (data/probe_source, rules/probe.smk): with train_refined the
# simulated or imported splits go to data/<cell>/given/, and data/<cell>/{train,test}.h5 carry
# the probe refined on the train split; otherwise simulation and import write data/<cell>/.
REFINED_PROBE = STUDY.data.refines_probe
GIVEN_DATA = f"data/{CELL}/given" if REFINED_PROBE else f"data/{CELL}"


def error_level(wildcards):
    """The error-level label of a job's cell ('' for the exact cell)."""
    return wildcards.level.lstrip("_")


def root(scale):
    return f"{RESULTS}/{STUDY_NAME}/{scale}"


def is_full(wildcards):
    return wildcards.scale == "full"


def job_threads(wildcards):
    """Scaled jobs use one core each (several run side by side); full-scale jobs get eight."""
    return 8 if is_full(wildcards) else 1


def job_gpu(wildcards):
    return 1 if is_full(wildcards) else 0


def mem_mb(scaled, full):
    return lambda wildcards, attempt: (full if is_full(wildcards) else scaled) * attempt


def runtime_min(scaled, full):
    """``runtime`` in minutes, growing with the attempt like ``mem_mb`` up to 24 hours
    (``retry_runtime``): a job killed at its time limit (SLURM's TIMEOUT) is retried with two
    and three times the request."""
    return lambda wildcards, attempt: retry_runtime(
        full if is_full(wildcards) else scaled, attempt
    )


# The pattern size up to which a network job's planned memory holds, per scale: one network's
# train + reconstruct process peaked at 1.0-1.5 GB up to N = 64 and 1.6-2.7 GB at N = 128 on the
# scaled cells (docs/performance.md, "Pattern size"); the full scale's value is planned at N = 128.
NETWORK_MEM_N = {"scaled": 64, "full": 128}


def network_mem_mb(scaled, full):
    """``mem_mb`` of a job that trains a network arm: the scale's value grows in proportion to N
    above ``NETWORK_MEM_N``, and each network of the scale's ensemble beyond the first adds half a
    one-network job (measured: three residual U-Nets at N = 64 and 128 took 1.6-2.0 times the
    peak memory of one; docs/performance.md, "Ensembles")."""

    def need(wildcards, attempt):
        sc = STUDY.scale(wildcards.scale)
        base = full if is_full(wildcards) else scaled
        size = max(1.0, sc.N / NETWORK_MEM_N[wildcards.scale])
        return int(base * size * (1 + (sc.training.ensemble - 1) / 2)) * attempt

    return need


# A scaled network job asks for this many times the planned time of one idle CPU thread
# (ptycho.training.cost: the pattern-size benchmark's measurements), at least 5 minutes: cluster
# nodes differ, and a loaded node measured up to three times slower.
NETWORK_RUNTIME_MARGIN = 3.0


@functools.cache
def _cell_patterns(scale, overlap):
    """(train, test) patterns of a simulated cell, from the scan geometry (no simulation)."""
    try:
        return scan_patterns(STUDY, scale, overlap)
    except PtychoError as exc:
        raise WorkflowError(str(exc))


def _job_patterns(wildcards, input):
    """(train, test) patterns of a network job's cell: the scan's, or the imported files'
    (read when they exist; before that Snakemake leaves the request to be determined).
    """
    if not STUDY.data.external:
        return _cell_patterns(wildcards.scale, wildcards.overlap)
    from ptycho.data.dataset import Dataset

    counts = []
    for split in ("train", "test"):
        if split not in input.keys():
            counts.append(0)
            continue
        path = getattr(input, split)
        # not imported yet: Snakemake evaluates the request again once the file exists
        if not Path(path).is_file():
            raise FileNotFoundError(errno.ENOENT, "not imported yet", path)
        with Dataset(path, require_object=False) as ds:
            counts.append(ds.n)
    return tuple(counts)


def network_runtime(full, adapt=False):
    """``runtime`` (minutes) of a job that trains (or, ``adapt``, fine-tunes) a network arm and
    reconstructs its cell, from the study, growing with the attempt up to 24 hours
    (``retry_runtime``: a job killed at its time limit is retried with two and three times the
    request).

    Scaled: ``NETWORK_RUNTIME_MARGIN`` x the planned time of one CPU thread
    (``ptycho.training.cost``) for the cell's patterns, the scale's epochs (the adaptation's, on
    the test patterns), N, the gridsize and the ensemble; at least 5 minutes. Full: ``full``
    minutes per network up to N = 128 (the rehearsed GPU job), growing with the pattern's pixels
    above it."""

    def need(wildcards, input, attempt):
        sc = STUDY.scale(wildcards.scale)
        k = sc.training.ensemble
        if is_full(wildcards):
            minutes = math.ceil(full * k * max(1.0, (sc.N / 128) ** 2))
            return retry_runtime(minutes, attempt)
        n_train, n_test = _job_patterns(wildcards, input)
        g = int(getattr(wildcards, "gridsize", 1))
        if adapt:
            seconds = network_job_seconds(
                sc.N, g, n_test, sc.adaptation.epochs, n_test, k
            )
        else:
            seconds = network_job_seconds(
                sc.N, g, n_train, sc.training.epochs, n_test, k
            )
        minutes = max(5, math.ceil(NETWORK_RUNTIME_MARGIN * seconds / 60))
        return retry_runtime(minutes, attempt)

    return need


def datasets(scale, split, levels=("",)):
    """The dataset files of a split: the exact cells' (default) or those of ``levels``."""
    return [f"{root(scale)}/data/{c}/{split}.h5" for c in cells(scale, list(levels))]


def dataset_outputs(scale):
    r = root(scale)
    return [
        f"{r}/data/{c}/{f}"
        for c in cells(scale)
        for f in ("train.h5", "test.h5", "summary.json", "summary.png")
    ] + probe_outputs(scale)


def model_outputs(scale, arms):
    r = root(scale)
    return [
        f"{r}/models/{a}/{c}/{f}"
        for a in arms
        for c in cells(scale)
        for f in ("model.keras", "bundle.json", "history.csv", "loss.png")
    ]


def variant_model_outputs(scale):
    """The model directories of the variants that train (models/<variant>/<cell>/)."""
    return [
        f"{root(scale)}/models/{v}/{c}" for v in TRAINING_VARIANTS for c in cells(scale)
    ]


def recon_outputs(scale, arms):
    return [f"{root(scale)}/recon/{a}/{c}.h5" for a in arms for c in cells(scale)]


def eval_outputs(scale):
    r = root(scale)
    return [
        f"{r}/eval/{a}/{c}/{f}"
        for a in ARMS
        for c in cells(scale)
        for f in ("metrics.json", "aligned.h5")
    ]


def metric_files(wildcards):
    """The metrics of the exact cells (the grids, curves, statistics and checks per cell)."""
    r = root(wildcards.scale)
    return [
        f"{r}/eval/{a}/{c}/metrics.json"
        for a in ARMS
        for c in exact_cells(wildcards.scale)
    ]


def error_metric_files(wildcards):
    """The metrics of the cells at error levels (metrics.csv, robustness report, their check)."""
    r = root(wildcards.scale)
    return [
        f"{r}/eval/{a}/{c}/metrics.json"
        for a in ARMS
        for c in error_cells(wildcards.scale)
    ]


def history_files(wildcards):
    r = root(wildcards.scale)
    return [
        f"{r}/models/{a}/{c}/history.csv"
        for a in TRAINED_ARMS
        for c in exact_cells(wildcards.scale)
    ]


def error_history_files(wildcards):
    r = root(wildcards.scale)
    return [
        f"{r}/models/{a}/{c}/history.csv"
        for a in TRAINED_ARMS
        for c in error_cells(wildcards.scale)
    ]


def history_labels(wildcards):
    return [
        f"{a} {c.replace('_', ' ')}"
        for a in TRAINED_ARMS
        for c in exact_cells(wildcards.scale)
    ]


# one robustness figure per error kind (probe, positions, coherence) present in the study
ERROR_KINDS = list(
    dict.fromkeys(lv.kind for lv in (STUDY.errors.levels() if STUDY.errors else ()))
)


def report_outputs(scale):
    r = f"{root(scale)}/report"
    figs = [
        "ssim_grid",
        "ms_ssim_grid",
        "delta_grid",
        "metric_vs_dose",
        "frc",
        "losses",
        "quality_time",
        "fluence",
        "dose_resolution",
    ]
    if not GROUND_TRUTH:
        figs += ["residual_grid", "frc_halves_grid"]
    figs += [f"robustness_{k}" for k in ERROR_KINDS]
    tables = ["robustness.csv"] if ERROR_KINDS else []
    return (
        [
            f"{r}/metrics.csv",
            f"{r}/quality_time.csv",
            f"{r}/dose_resolution.csv",
        ]
        + [f"{r}/{t}" for t in tables]
        + [f"{r}/figures/{f}.png" for f in figs]
        + [f"{r}/comparisons/{c}.png" for c in cells(scale)]
    )


def expected_files(wildcards):
    """Every file the verification checks for existence (all outputs before verify_study)."""
    s = wildcards.scale
    return (
        dataset_outputs(s)
        + model_outputs(s, TRAINED_ARMS)
        + recon_outputs(s, ARMS)
        + eval_outputs(s)
        + report_outputs(s)
        + half_outputs(s)
        + probe_outputs(s)
    )


def verified_inputs(scale):
    """What the verified report of a scale stands on: every file verify_study reads. The phase_g
    targets require them, so a result deleted after a verified run is rebuilt and re-verified
    (Snakemake skips a missing intermediate file when nothing downstream needs to run).
    """
    wc = SimpleNamespace(scale=scale)
    # a training variant's model directory too (verify_study checks files, not directories)
    return expected_files(wc) + variant_model_outputs(scale) + benchmark_files(wc)


def benchmark_files(wildcards):
    scale = wildcards.scale
    r = f"{root(scale)}/benchmarks"
    data_rule = "import_dataset" if EXTERNAL else "simulate_dataset"
    out = [f"{r}/{data_rule}/{c}.tsv" for c in cells(scale)]
    for a in TRAINED_ARMS:
        out += [
            f"{r}/{NETWORK_RULES[IDENTITIES[a].kind]}/{a}/{c}.tsv" for c in cells(scale)
        ]
    for a in [a for a, i in IDENTITIES.items() if i.is_solver and i.builtin]:
        out += [f"{r}/reconstruct/{a}/{c}.tsv" for c in cells(scale)]
    for a in VARIANTS:
        out += [f"{r}/run_arm/{a}/{c}.tsv" for c in cells(scale)]
    for a in ARMS:
        out += [f"{r}/evaluate_arm/{a}/{c}.tsv" for c in cells(scale)]
    if REFINED_PROBE:
        out += [f"{r}/refine_train_probe/{c}.tsv" for c in cells(scale)]
    return out


def probe_outputs(scale):
    """Each cell's probe refined on its train split and its figure (probe_source train_refined)."""
    if not REFINED_PROBE:
        return []
    r = root(scale)
    return [
        f"{r}/data/{c}/probe/refined_probe.{ext}"
        for c in cells(scale)
        for ext in ("h5", "png")
    ]


# ---- external data and ground-truth-free evaluation (data: in the study; rules/external.smk)
EXTERNAL = STUDY.data.external
GROUND_TRUTH = STUDY.data.ground_truth
if EXTERNAL:
    from ptycho.interop.external import check_external
    from ptycho.errors import PtychoError

    try:  # every external file is opened and checked before any job runs
        check_external(STUDY)
    except PtychoError as _exc:
        raise WorkflowError(f"{STUDY_FILE}: {_exc}")


def external_files(wildcards):
    """The external files of a cell (inputs of import_dataset, so a changed file re-imports)."""
    cell = STUDY.data.cell(wildcards.dose, wildcards.overlap)
    return [p for split in (cell.train, cell.test) for p in split.paths]


def half_recons(wildcards):
    """An arm's reconstructions of the two half scans: evaluated only without ground truth."""
    if GROUND_TRUTH:
        return []
    r = root(wildcards.scale)
    c = CELL.format(**wildcards)
    return [f"{r}/recon_halves/{wildcards.arm}/{c}_half{h}.h5" for h in (1, 2)]


def half_model(wildcards):
    """The model a network arm reconstructs the half scans with: its own, or for the adapted arm
    the PINN it adapts (each half is adapted to its own counts, as the full scan is, so the two
    halves stay independent)."""
    ident = STUDY.identity(wildcards.net)
    net = ident.name
    if ident.kind == "adapted":
        net = ArmIdentity.builtin_id("pinn", ident.gridsize).name
    d = f"{root(wildcards.scale)}/models/{net}/{CELL.format(**wildcards)}"
    return {"model": f"{d}/model.keras", "bundle": f"{d}/bundle.json"}


def half_outputs(scale):
    """Half-scan test files and every arm's half-scan reconstructions (ground-truth-free studies)."""
    if GROUND_TRUTH:
        return []
    r = root(scale)
    return [f"{r}/data/{c}/test_half{h}.h5" for c in cells(scale) for h in (1, 2)] + [
        f"{r}/recon_halves/{a}/{c}_half{h}.h5"
        for a in ARMS
        for c in cells(scale)
        for h in (1, 2)
    ]


def export_outputs(scale, kind):
    """Files of the export targets: 'npz' (PtychoPINN) or 'ptychodus' (product + diffraction)."""
    r = f"{root(scale)}/export"
    CELLS = cells(scale)
    if kind == "npz":
        return [f"{r}/{c}/data/{s}.npz" for c in CELLS for s in ("train", "test")] + [
            f"{r}/{c}/recon/{a}.npz" for c in CELLS for a in ARMS
        ]
    return [
        f"{r}/{c}/data/{s}/{f}"
        for c in CELLS
        for s in ("train", "test")
        for f in ("diffraction.h5", "product.h5")
    ] + [f"{r}/{c}/recon/{a}/product.h5" for c in CELLS for a in ARMS]


def trained_history(wildcards):
    """The training history of a network arm (its loss curve goes into exported products)."""
    if wildcards.arm not in TRAINED_ARMS:
        return []
    return [
        f"{root(wildcards.scale)}/models/{wildcards.arm}/{CELL.format(**wildcards)}/history.csv"
    ]


def variant_inputs(wildcards):
    """The test split, and what the variant declares it reads: the train split (train, labels),
    the hybrid start arm's reconstruction (start)."""
    r, c = root(wildcards.scale), CELL.format(**wildcards)
    reads = VARIANT_INFO[wildcards.variant]["reads"]
    out = {"test": f"{r}/data/{c}/test.h5"}
    if "train" in reads or "labels" in reads:
        out["train"] = f"{r}/data/{c}/train.h5"
    if "start" in reads:
        out["start"] = f"{r}/recon/{HYBRID_START}/{c}.h5"
    return out


def variant_half_inputs(wildcards):
    """The two half scans (and a training variant's model directory)."""
    r, c = root(wildcards.scale), CELL.format(**wildcards)
    out = {h: f"{r}/data/{c}/test_{h}.h5" for h in ("half1", "half2")}
    if wildcards.variant in TRAINING_VARIANTS:
        out["model"] = f"{r}/models/{wildcards.variant}/{c}"
    return out
