"""Typed, validated study configuration.

A study YAML is validated against ``ptycho/schemas/study.schema.yaml`` (the same file the workflow
validates with ``snakemake.utils.validate``), missing keys are filled from the schema defaults, then
cross-field rules are checked and the result is frozen into dataclasses that are passed explicitly
to every function. Nothing here is global or mutable.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ptycho.arms.spec import EXTERNAL_COMMAND, ArmIdentity, check_variant_name
from ptycho.errors import ConfigError
from ptycho.models.spec import check_backbone, fill_network_defaults

ARMS = ("pinn", "adapted", "baseline", "iterative", "hybrid")
SCALES = ("scaled", "full")
# Arms whose reconstruction is a pty-chi LSQML solve (flat start / network start); the others are
# trained networks.
SOLVER_ARMS = ("iterative", "hybrid")
SNAPSHOT_STEPS = (1, 2, 5)  # default snapshot epochs: 1, 2, 5, 10, 20, 50, ... up to the budget
# A study is a few dozen values: more than this after YAML aliases are expanded is refused (a
# "billion laughs" document would otherwise be validated, copied and quoted in error messages).
MAX_STUDY_VALUES = 100_000
MAX_STUDY_BYTES = 1 << 20
MAX_QUOTED = 400  # characters of a value an error message quotes


def schema_path(name: str = "study") -> Path:
    """Path of a packaged JSON schema (``study`` or ``config``)."""
    return Path(str(resources.files("ptycho") / "schemas" / f"{name}.schema.yaml"))


def load_schema(name: str = "study") -> dict:
    with open(schema_path(name)) as fh:
        return yaml.safe_load(fh)


def _validator_with_defaults(schema: dict) -> jsonschema.protocols.Validator:
    """Draft 2020-12 validator that also fills ``default`` values (the jsonschema FAQ recipe)."""
    base = jsonschema.Draft202012Validator
    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "$ref" in sub and "default" not in sub:  # a default beside $ref wins
                    sub = validator._resolver.lookup(sub["$ref"]).contents
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema_)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def _short(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` on one line, cut to ``limit`` characters (error messages quote values)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + f" ... ({len(text) - limit} more chars)"


def _walk_values(data: Any, source: str, limit: int = MAX_STUDY_VALUES):
    """Yield (path, value) of every value in a nested dict/list (``path()`` gives its key path);
    ConfigError once more than ``limit`` values were seen. Aliases are shared by the YAML loader,
    so only walking expands them: the walk stops long before a "billion laughs" document (or a
    recursive one) is expanded."""
    stack = [(None, data)]  # (node, value); a node is (key, parent node): paths built on demand
    seen = 0
    while stack:
        node, value = stack.pop()
        seen += 1
        if seen > limit:
            raise ConfigError(f"{source}: more than {limit} values after expanding YAML aliases; "
                              "a study holds a few dozen")
        yield node, value
        if isinstance(value, dict):
            stack.extend(((str(k), node), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((str(i), node), v) for i, v in enumerate(value))


def _key_path(node) -> str:
    keys = []
    while node is not None:
        keys.append(node[0])
        node = node[1]
    return "/".join(reversed(keys)) or "<top level>"


def check_finite_numbers(data: Any, source: str) -> None:
    """Raise ConfigError naming the key of a NaN or infinite number (JSON schema bounds let NaN
    through: every comparison with it is false), or for a document that is too large."""
    for node, value in _walk_values(data, source):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: invalid value at '{_key_path(node)}': {value} is not a "
                              "finite number")


def read_study_file(path: str | Path) -> Any:
    """The parsed (safe-loaded) YAML of a study file; ConfigError for a missing, oversized or
    malformed file, with the parser's message on one line and cut short."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found")
    size = path.stat().st_size
    if size > MAX_STUDY_BYTES:
        raise ConfigError(f"{path}: study file is {size} bytes; expected at most {MAX_STUDY_BYTES}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {_short(exc)}") from None
    check_finite_numbers(raw, str(path))  # also refuses documents that expand past the cap
    return raw


def validate_with_defaults(data: Any, schema: dict, source: str) -> dict:
    """Validate ``data`` against ``schema`` and fill defaults; raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    check_finite_numbers(data, source)
    data = copy.deepcopy(data)
    validator = _validator_with_defaults(schema)
    # Two passes: the first fills defaults of objects that are themselves defaults.
    for _ in range(2):
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "<top level>"
            hint = ""
            if isinstance(err.instance, str) and err.validator == "type":
                try:
                    float(err.instance)
                    hint = " (YAML reads 1e3 as text: write 1000 or 1.0e+3)"
                except ValueError:
                    pass
            raise ConfigError(f"{source}: invalid value at '{where}': {_short(err.message)}{hint}")
    if "scales" in schema.get("properties", {}):
        fill_scale_network_defaults(data)
    return data


def fill_scale_network_defaults(study: dict) -> dict:
    """Set, in place, every scale's training ``filters``, ``depth``, ``support`` and
    ``learning_rate`` that the study leaves out (null) from the scale's N and backbone
    (``ptycho.models.spec.network_defaults``); values the study sets win. The validated study
    dict (what every workflow job receives) then holds the values the jobs train with."""
    for sc in (study.get("scales") or {}).values():
        if isinstance(sc, dict) and isinstance(sc.get("training"), dict) and "N" in sc:
            sc["training"] = fill_network_defaults(sc["N"], sc["training"])
    return study


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    plateau_patience: int
    validation_fraction: float
    filters: int
    depth: int
    backbone: str = "cnn"
    support: float = 1.0
    schedule: str = "plateau"
    supervised_learning_rate: float | None = None
    # the baseline's phase target: "offset_free" (modulo one constant per patch, which a single
    # diffraction pattern does not determine) or "absolute" (the label's phase)
    supervised_phase: str = "offset_free"
    # gridsize 2: rotate the members of a group onto the seed's phase offset before the overlap
    # constraint averages them
    align_group_phases: bool = True
    # the global gradient-norm bound of Adam's steps (None: unclipped)
    clip_norm: float | None = None
    # PINN arms: the physics layer's probe is a trainable variable, initialised at the nominal
    # probe, with its power held fixed (docs/robustness.md, "Trainable probe")
    train_probe: bool = False
    # the probe's learning rate relative to the network's (train_probe only)
    probe_learning_rate_scale: float = 1.0
    # networks per trained arm, trained side by side from different random starts; the
    # reconstruction stitches every member's patch (1: one network)
    ensemble: int = 1

    def rate(self, arm_id: str) -> float:
        """The learning rate of an arm: ``supervised_learning_rate`` for the baseline when set."""
        if arm_id == "baseline" and self.supervised_learning_rate is not None:
            return self.supervised_learning_rate
        return self.learning_rate


@dataclass(frozen=True)
class AdaptationConfig:
    """The ``adapted`` arm's fine-tuning on the test scan's counts (no labels)."""

    epochs: int
    learning_rate: float
    # patterns per step (a gridsize-2 batch holds batch_size / 4 groups); None: the scale's
    # training batch size
    batch_size: int | None = None
    # keep the backbone's encoder (stem and enc* layers) fixed and fine-tune the rest
    freeze_encoder: bool = False
    # refine the probe on the test scan (the physics layer's trainable probe, from the nominal
    # probe or the one the PINN learned) at probe_learning_rate_scale x the network's rate
    refine_probe: bool = False
    probe_learning_rate_scale: float = 1.0

    def patterns_per_step(self, training_batch_size: int) -> int:
        return int(self.batch_size or training_batch_size)


@dataclass(frozen=True)
class IterativeConfig:
    """pty-chi LSQML settings of one scale (the iterative and hybrid arms share them).

    ``snapshots``: epochs at which the solve records its object and cumulative wall time (None:
    the default 1-2-5 sequence); :func:`snapshot_epochs` resolves them, final epoch included."""

    iterations: int
    batch_size: int
    noise_model: str
    refine_probe: bool
    snapshots: tuple[int, ...] | None = None
    refine_positions: bool = False
    """pty-chi's position correction (gradient method) on the test scan."""
    probe_modes: int = 0
    """Incoherent probe modes of the solve: 0 those of the dataset's nominal probe; M >= 1 that
    many (modes the nominal probe lacks are added with a small power and refined)."""
    # position correction (used only with refine_positions; docs/robustness.md)
    position_correction: str = "gradient"
    """pty-chi's correction: 'gradient' or 'cross_correlation'."""
    position_start_epoch: int = 5
    """First epoch (0-based) whose updates move the positions: the object takes shape first."""
    position_step_size: float = 4.0
    """Step of the position update (pty-chi's gradient estimate is a damped Gauss-Newton step)."""
    position_update_limit_px: float | None = None
    """Largest move per update and axis, pixels (None: no fixed limit)."""
    position_clip_by_mad: bool = False
    """Also clip each update at 10 x the median absolute deviation of the batch's updates."""
    position_momentum_gain: float = 0.0
    """pty-chi's momentum acceleration of the position updates (0: none)."""
    # solver engine and its parameters (None: the engine's default, applied by the solve;
    # docs/study.md, "Solver engines"). Left out of the resolved study when None.
    engine: str | None = None
    """pty-chi engine: 'lsqml' (None), 'pie', 'epie', 'rpie' or 'dm' (:data:`ENGINES`)."""
    step_size: float | None = None
    """Object step size (LSQML and the PIE family)."""
    object_alpha: float | None = None
    """PIE family: the object update's alpha (Maiden et al. 2017, table 1)."""
    probe_alpha: float | None = None
    """PIE family: the probe update's alpha (used with refine_probe)."""
    relaxation: float | None = None
    """DM: relaxation of the exit-wave update, in (0, 1]."""
    inertia: float | None = None
    """DM: inertia of the object (and probe) update, the weight kept of the previous estimate,
    in [0, 1)."""


# pty-chi engines of the iterative block and the optional keys each one takes (absent: the
# engine's default, ptycho/reconstruct/iterative.py ENGINE_DEFAULTS). Keys an engine does not list
# here are refused by check_engine.
ENGINES = ("lsqml", "pie", "epie", "rpie", "dm")
ENGINE_KEYS = {
    "step_size": ("lsqml", "pie", "epie", "rpie"),
    "object_alpha": ("pie", "epie", "rpie"),
    "probe_alpha": ("pie", "epie", "rpie"),
    "relaxation": ("dm",),
    "inertia": ("dm",),
}


def check_engine(block: dict, where: str = "iterative") -> str:
    """Check an iterative block (a dict, schema defaults filled or not) for its engine: keys the
    engine does not take, and options it cannot do. Returns the engine ('lsqml' when absent).
    Raises ConfigError naming ``where`` (a location such as ``study.yaml: scales/scaled/iterative``
    or a variant's) and the key at fault, as ``<where>/<key>: ...``."""
    engine = block.get("engine")
    engine = "lsqml" if engine is None else engine
    if engine not in ENGINES:
        raise ConfigError(f"{where}/engine: {engine!r} is not a pty-chi engine of this project; "
                          f"expected one of {list(ENGINES)}")
    for key, engines in ENGINE_KEYS.items():
        if block.get(key) is not None and engine not in engines:
            raise ConfigError(f"{where}/{key}: engine {engine!r} does not take {key!r} (only "
                              f"{', '.join(engines)} do); remove it")
    if block.get("noise_model", "gaussian") != "gaussian" and engine != "lsqml":
        raise ConfigError(f"{where}/noise_model: engine {engine!r} has no noise model (its "
                          "amplitude projection fits the measured magnitudes); only lsqml takes "
                          f"noise_model {block.get('noise_model')!r}")
    if block.get("refine_probe") and engine == "pie":
        raise ConfigError(f"{where}/refine_probe: pty-chi's PIE engine fails to refine the probe "
                          "(its probe update has the wrong shape); use epie or rpie, or "
                          "refine_probe: false")
    if (block.get("refine_positions") and block.get("position_momentum_gain", 0.0)
            and engine != "lsqml"):
        raise ConfigError(f"{where}/position_momentum_gain: only lsqml accelerates the position "
                          f"updates; engine {engine!r} needs position_momentum_gain: 0")
    if block.get("refine_positions") and engine != "lsqml":
        # measured on exact positions (N = 16 cell, 3 epochs): the gradient correction with the
        # study's position settings moved them by 0.5 (pie) to 1.7 (epie) and 9.7 (dm) px RMS;
        # the cross-correlation correction by 0.01-0.02 px (PIE family)
        if engine == "dm":
            raise ConfigError(f"{where}/refine_positions: engine 'dm' cannot refine positions "
                              "here (its gradient correction runs away); use lsqml or the PIE "
                              "family with position_correction: cross_correlation")
        if block.get("position_correction", "gradient") != "cross_correlation":
            raise ConfigError(f"{where}/position_correction: engine {engine!r} refines positions "
                              "with position_correction: cross_correlation only (its gradient "
                              "correction runs away with these settings)")
    for key, lo, hi, lo_open, hi_open in (("step_size", 0, None, True, False),
                                          ("object_alpha", 0, None, False, False),
                                          ("probe_alpha", 0, None, False, False),
                                          ("relaxation", 0, 1, True, False),
                                          ("inertia", 0, 1, False, True)):
        v = block.get(key)
        if v is None:
            continue
        bad = (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
               or (v <= lo if lo_open else v < lo)
               or (hi is not None and (v >= hi if hi_open else v > hi)))
        if bad:
            rng = (f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else str(hi)}"
                   f"{'' if hi is None else (')' if hi_open else ']')}")
            raise ConfigError(f"{where}/{key}: {v!r} is outside {rng}")
    return engine


def snapshot_epochs(iterations: int, requested=None, where: str = "'iterative/snapshots'"
                    ) -> tuple[int, ...]:
    """Sorted epochs at which the solver records its object: ``requested`` (each in
    1..``iterations``) or, when None, 1, 2, 5, 10, 20, 50, ... below the budget; the final epoch
    ``iterations`` is always included. Raises ConfigError naming ``where`` and the bad epoch."""
    iterations = int(iterations)
    if requested is None:
        out, decade = set(), 1
        while decade < iterations:
            out.update(s * decade for s in SNAPSHOT_STEPS if s * decade < iterations)
            decade *= 10
    else:
        out = set()
        for e in requested:
            if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= iterations:
                raise ConfigError(f"{where}: epoch {e!r} is outside 1..{iterations} (the "
                                  "iteration budget)")
            out.add(int(e))
    out.add(iterations)
    return tuple(sorted(out))


@dataclass(frozen=True)
class ErrorLevel:
    """One level of a study's error axes: a grid coordinate next to dose and overlap.

    ``kind``: 'probe' (the arms' nominal probe has relative error ``probe_error``, produced by
    ``probe_kind``), 'positions' (nominal positions = true + jitter of RMS ``jitter_px`` and the
    systematic ``scale`` / ``rotation_deg`` / ``drift_px``) or 'coherence' (data from incoherent
    probe modes of power ``fractions``; the arms get ``nominal_modes`` 'one' or 'all').
    ``value``: the level on its axis (relative error, pixels, or 1 - the first mode's fraction)."""

    label: str
    kind: str
    value: float
    probe_kind: str = "defocus"
    probe_error: float = 0.0
    jitter_px: float = 0.0
    scale: float = 0.0
    rotation_deg: float = 0.0
    drift_px: float = 0.0
    fractions: tuple[float, ...] = ()
    nominal_modes: str = "one"


@dataclass(frozen=True)
class ErrorsConfig:
    """The study's error axes (``errors`` in the study YAML); level 0 of an axis is the exact
    cell every study has, so it adds no grid cell."""

    probe_kind: str = "defocus"
    probe_levels: tuple[float, ...] = ()
    jitter_px: tuple[float, ...] = ()
    scale: float = 0.0
    rotation_deg: float = 0.0
    drift_px: float = 0.0
    coherence: tuple[tuple[float, ...], ...] = ()
    nominal_modes: str = "one"

    def levels(self) -> tuple[ErrorLevel, ...]:
        """Every non-zero level, in the order probe, positions, coherence."""
        out = []
        for e in self.probe_levels:
            if e > 0:
                out.append(ErrorLevel(label=f"probe{_num(100 * e)}", kind="probe", value=float(e),
                                      probe_kind=self.probe_kind, probe_error=float(e)))
        for j in self.jitter_px:
            if j > 0 or (j == 0 and (self.scale or self.rotation_deg or self.drift_px)):
                out.append(ErrorLevel(label=f"jitter{_num(j)}", kind="positions", value=float(j),
                                      jitter_px=float(j), scale=self.scale,
                                      rotation_deg=self.rotation_deg, drift_px=self.drift_px))
        for f in self.coherence:
            out.append(ErrorLevel(label=f"modes{len(f)}p{_num(100 * f[0])}", kind="coherence",
                                  value=float(1 - f[0]), fractions=tuple(f),
                                  nominal_modes=self.nominal_modes))
        return tuple(out)

    def level(self, label: str) -> ErrorLevel | None:
        """The level of a label; None for '' or 'exact' (no error)."""
        if label in ("", "exact"):
            return None
        for lv in self.levels():
            if lv.label == label:
                return lv
        raise ConfigError(f"unknown error level '{label}', expected one of "
                          f"{[lv.label for lv in self.levels()]}")


def _num(x: float) -> str:
    """A level's number in a label: 10, 2.5, 0.5 (no exponent, no trailing zeros)."""
    return f"{round(float(x), 6):g}"


def _errors_config(d: dict, source: str) -> ErrorsConfig | None:
    """The ``errors`` section, checked; None when absent or every level is 0."""
    e = d.get("errors")
    if not e:
        return None
    p = e.get("probe") or {}
    q = e.get("positions") or {}
    c = e.get("coherence") or {}
    fr = []
    for i, f in enumerate(c.get("fractions", [])):
        if abs(sum(f) - 1.0) > 1e-6:
            raise ConfigError(f"{source}: 'errors/coherence/fractions/{i}': mode power fractions "
                              f"must sum to 1, got {list(f)} (sum {sum(f):g})")
        fr.append(tuple(float(x) for x in f))
    if p.get("kind") == "aperture" and any(x > 0 for x in p.get("levels", [])) and \
            d["probe"]["source"] != "simulated":
        raise ConfigError(f"{source}: 'errors/probe/kind': an aperture error needs a simulated "
                          "probe (probe/source: simulated); use defocus or aberration")
    cfg = ErrorsConfig(probe_kind=p.get("kind", "defocus"),
                       probe_levels=tuple(float(x) for x in p.get("levels", [])),
                       jitter_px=tuple(float(x) for x in q.get("jitter_px", [])),
                       scale=float(q.get("scale", 0.0)),
                       rotation_deg=float(q.get("rotation_deg", 0.0)),
                       drift_px=float(q.get("drift_px", 0.0)),
                       coherence=tuple(fr), nominal_modes=c.get("nominal_modes", "one"))
    labels = [lv.label for lv in cfg.levels()]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{source}: 'errors': levels {labels} repeat a label")
    return cfg if labels else None


@dataclass(frozen=True)
class HybridConfig:
    """The network-initialised iterative arm: which network arm's reconstruction starts it."""

    start_from: str


@dataclass(frozen=True)
class ScaleConfig:
    name: str
    N: int
    object_size: tuple[int, int]
    chunk_size: int
    inference_batch_size: int
    training: TrainingConfig
    iterative: IterativeConfig
    adaptation: AdaptationConfig
    replicates: int = 1
    """Independent repeats of every cell (own noise, grouping and training seeds; shared scan)."""
    pixel_size_m: float | None = None
    """Object pixel size in metres (optional): fluence is then also reported per m^2."""


@dataclass(frozen=True)
class ObjectConfig:
    source: str
    path: str | None
    amplitude_image: str
    phase_image: str
    amplitude_range: tuple[float, float]
    phase_range: tuple[float, float]


@dataclass(frozen=True)
class ProbeConfig:
    source: str
    path: str | None
    aperture_radius: float
    fresnel_number: float


@dataclass(frozen=True)
class ScanConfig:
    pattern: str
    jitter: float
    train_fraction: float


# The shared patch error correction where a study leaves it out: on from this N, with these iterations.
SHARED_ERROR_MIN_N = 64
SHARED_ERROR_ITERATIONS = 10


@dataclass(frozen=True)
class StitchingConfig:
    phase_sync: bool
    refine_iterations: int
    sync_method: str = "blocks"  # "blocks" (linear in n) or "global" (the solver before 2026-11)
    shared_error_iterations: int | None = None
    """Iterations of the shared patch error correction (``PatchStore.shared_error``); 0: off;
    None: follows N (``shared_error_iterations_at``)."""

    def shared_error_iterations_at(self, N: int) -> int:
        """The shared patch error correction's iterations for N x N patterns: the study's value,
        or where it leaves it out, ``SHARED_ERROR_ITERATIONS`` from N = ``SHARED_ERROR_MIN_N``
        and 0 (off) below. Measured (docs/performance.md): at N = 64 and 128 the residual U-Net's
        patches share an error that leaves a lattice with the scan's period (pinn_g1 amplitude
        SSIM +0.044 at N = 64, +0.013 at N = 128 with the correction); at N = 32 it changed no
        SSIM by more than 0.006, so the default study stitches as without it."""
        if self.shared_error_iterations is not None:
            return int(self.shared_error_iterations)
        return SHARED_ERROR_ITERATIONS if N >= SHARED_ERROR_MIN_N else 0


@dataclass(frozen=True)
class Seeds:
    simulation: int
    grouping: int
    training: int
    bootstrap: int = 13


@dataclass(frozen=True)
class IntervalConfig:
    """Spatial block bootstrap of one reconstruction's metrics (ptycho.evaluation.intervals)."""

    confidence: float = 0.95
    resamples: int = 1000
    block_px: int | None = None
    """Block side in pixels; None: one probe diameter (90% energy), rounded."""


@dataclass(frozen=True)
class EqualFluenceConfig:
    """Grid cells (dose label, overlap view) chosen to deposit the same fluence."""

    cells: tuple[tuple[str, str], ...]
    tolerance: float


@dataclass(frozen=True)
class GeometryConfig:
    """Physical units of exported files: photon energy (eV), object-detector distance (m),
    detector pixel pitch (m). The object pixel size is lambda z / (N p) (far field)."""

    photon_energy_eV: float = 8000.0
    detector_distance_m: float = 2.0
    detector_pixel_size_m: float = 7.5e-5


EXTERNAL_FORMATS = ("hdf5", "npz", "ptychodus")


@dataclass(frozen=True)
class ExternalFile:
    """One split of an external dataset: ``format`` hdf5 / npz with ``path``, or ptychodus with
    ``product`` and ``diffraction``."""

    format: str
    path: str | None = None
    product: str | None = None
    diffraction: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.product, self.diffraction) if self.format == "ptychodus" else (self.path,)


@dataclass(frozen=True)
class ExternalCell:
    dose: float
    overlap: str
    train: ExternalFile
    test: ExternalFile


PROBE_SOURCES = ("given", "train_refined")


@dataclass(frozen=True)
class ProbeRefinementConfig:
    """pty-chi LSQML on a cell's train split that refines the given probe (``data:
    probe_refinement``): epochs, patterns per update, incoherent modes (0: the given probe's),
    noise model."""

    iterations: int = 30
    batch_size: int = 32
    probe_modes: int = 0
    noise_model: str = "poisson"


@dataclass(frozen=True)
class DataConfig:
    """``source`` simulated (from object and probe) or external (``cells``, one per grid cell);
    ``ground_truth`` False: no object is used, evaluation is ground-truth free."""

    source: str = "simulated"
    ground_truth: bool = True
    cells: tuple[ExternalCell, ...] = ()
    probe_source: str = "given"
    """The nominal probe the arms are told: 'given' (the files' or the simulation's nominal probe)
    or 'train_refined' (that probe refined on each cell's train split, docs/own-data.md)."""
    probe_refinement: ProbeRefinementConfig | None = None
    """The train-split refinement's settings (only with probe_source 'train_refined')."""

    @property
    def refines_probe(self) -> bool:
        return self.probe_source == "train_refined"

    @property
    def external(self) -> bool:
        return self.source == "external"

    def cell(self, dose_lbl: str, overlap: str) -> ExternalCell:
        for c in self.cells:
            if dose_label(c.dose) == dose_lbl and c.overlap == overlap:
                return c
        raise ConfigError(f"data/cells: no external dataset for cell {dose_lbl}_{overlap}")


def _external_file(f: dict, where: str, source: str) -> ExternalFile:
    need = ("product", "diffraction") if f["format"] == "ptychodus" else ("path",)
    for key in need:
        if not f.get(key):
            raise ConfigError(f"{source}: '{where}/{key}' is required for format {f['format']}")
    extra = [k for k in ("path", "product", "diffraction") if k in f and k not in need]
    if extra:
        raise ConfigError(f"{source}: '{where}' has {extra}, which format {f['format']} does not "
                          f"use (expected {list(need)})")
    return ExternalFile(format=f["format"], path=f.get("path"), product=f.get("product"),
                        diffraction=f.get("diffraction"))


def _probe_source(dc: dict, source: str) -> dict:
    """The probe source keys of ``data:`` as DataConfig fields (checked beyond the schema)."""
    ps = dc.get("probe_source", "given")
    if ps not in PROBE_SOURCES:
        raise ConfigError(f"{source}: invalid value at 'data/probe_source': {ps!r}, expected one "
                          f"of {list(PROBE_SOURCES)}")
    if ps == "given":
        return {}
    pr = dict(dc.get("probe_refinement") or {})
    cfg = ProbeRefinementConfig(**pr)
    for key in ("iterations", "batch_size"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{source}: invalid value at 'data/probe_refinement/{key}': {v!r}, "
                              "expected an integer >= 1 (probe_source train_refined)")
    return {"probe_source": ps, "probe_refinement": cfg}


def _data_config(d: dict, source: str) -> DataConfig:
    dc = d["data"]
    refine = _probe_source(dc, source)
    if dc["source"] == "simulated":
        if dc["cells"]:
            raise ConfigError(f"{source}: 'data/cells' is only used with data/source: external")
        if not dc["ground_truth"]:
            raise ConfigError(f"{source}: 'data/ground_truth: false' needs data/source: external "
                              "(a simulated object is always known)")
        return DataConfig(**refine)
    if "baseline" in d["arms"] and not dc["ground_truth"]:
        raise ConfigError(f"{source}: 'data/ground_truth' is false but the supervised 'baseline' "
                          "arm trains on ground-truth patches; remove it from 'arms'")
    # the adapted arm adapts its PINN to each half scan on its own (independent halves); the
    # hybrid arm starts from a network reconstruction of the whole test scan
    if "hybrid" in d["arms"] and not dc["ground_truth"]:
        raise ConfigError(
            f"{source}: 'data/ground_truth' is false but the 'hybrid' arm is in 'arms': the "
            "ground-truth-free FRC needs independent reconstructions of the two half scans, "
            "which the hybrid arm does not have (it starts from a reconstruction of the whole "
            "test scan); remove it from 'arms'")
    grid = {(dose_label(x), o) for x in d["doses"] for o in d["overlaps"]}
    cells, seen = [], set()
    for i, c in enumerate(dc["cells"]):
        where = f"data/cells/{i}"
        key = (dose_label(c["dose"]), c["overlap"])
        if c["overlap"] not in d["overlaps"]:
            raise ConfigError(f"{source}: '{where}/overlap' is '{c['overlap']}', expected one of "
                              f"{sorted(d['overlaps'])}")
        if key not in grid:
            raise ConfigError(f"{source}: '{where}/dose' {c['dose']} is not one of 'doses' "
                              f"{d['doses']}")
        if key in seen:
            raise ConfigError(f"{source}: '{where}' repeats cell {key[0]}_{key[1]}")
        seen.add(key)
        cells.append(ExternalCell(
            dose=float(c["dose"]), overlap=c["overlap"],
            train=_external_file(c["train"], f"{where}/train", source),
            test=_external_file(c["test"], f"{where}/test", source),
        ))
    missing = sorted(f"{a}_{b}" for a, b in grid - seen)
    if missing:
        raise ConfigError(f"{source}: 'data/cells' has no dataset for the grid cells {missing} "
                          "(one entry per dose x overlap)")
    return DataConfig(source="external", ground_truth=bool(dc["ground_truth"]),
                      cells=tuple(cells), **refine)


@dataclass(frozen=True)
class VariantConfig:
    """One entry of ``variants:``: an extra arm with id ``name`` running ``arm`` (a built-in kind
    of :data:`ptycho.arms.spec.VARIANT_KINDS`, an entry-point name or ``module:Class``) with
    ``settings``. ``iterative``: for a variant of the iterative arm, the scale's iterative block
    with the settings applied, per scale (empty otherwise)."""

    name: str
    arm: str
    settings: dict = field(default_factory=dict)
    iterative: dict[str, IterativeConfig] = field(default_factory=dict)

    @property
    def identity(self) -> ArmIdentity:
        return ArmIdentity.of_variant(self.name, self.arm)


def _iterative_block(it: dict, scale: str, source: str, where: str) -> IterativeConfig:
    it = dict(it)
    it["snapshots"] = snapshot_epochs(it["iterations"], it.get("snapshots"),
                                      f"{source}: '{where}/snapshots'")
    return IterativeConfig(**it)


def _variants_config(d: dict, source: str) -> tuple[VariantConfig, ...]:
    """The checked ``variants:``: names that are not built-in arm ids; a variant of the iterative
    arm has settings the iterative block's schema accepts (each scale's block with the settings
    applied is validated again); a plugin's settings are checked by the plugin
    (``ptycho.arms.registry.check_study_arms``)."""
    out = []
    block = load_schema("study")["definitions"]["iterative"]
    for name, v in (d.get("variants") or {}).items():
        where = f"variants/{name}"
        check_variant_name(name, f"{source}: '{where}'")
        arm, settings = v["arm"], dict(v.get("settings") or {})
        if (ArmIdentity.try_parse(arm) is not None or arm in ARMS) and arm != "iterative":
            raise ConfigError(f"{source}: '{where}/arm' is {arm!r}: a variant runs the "
                              f"iterative arm, {EXTERNAL_COMMAND}, an entry point of the group "
                              "ptycho_dose.arms or module:Class")
        iterative = {}
        if arm == "iterative":
            known = block.get("properties", {})
            for key in settings:
                if key not in known:
                    raise ConfigError(f"{source}: invalid value at '{where}/settings/{key}': not a "
                                      f"key of the iterative block (expected one of "
                                      f"{sorted(known)})")
            for sname, sc in d["scales"].items():
                merged = {**sc["iterative"], **settings}
                try:
                    merged = validate_with_defaults(merged, block, "")
                except ConfigError as exc:
                    msg = str(exc)
                    msg = msg.replace("invalid value at '", f"invalid value at '{where}/settings/")
                    raise ConfigError(f"{source}{msg} (scale {sname})") from None
                check_engine(merged, f"{source}: {where}/settings (scale {sname})")
                iterative[sname] = _iterative_block(merged, sname, source,
                                                    f"{where}/settings")
        out.append(VariantConfig(name=name, arm=arm, settings=settings, iterative=iterative))
    return tuple(out)


@dataclass(frozen=True)
class StudyConfig:
    study: str
    description: str
    arms: tuple[str, ...]
    gridsizes: tuple[int, ...]
    neighbours: int
    doses: tuple[float, ...]
    overlaps: dict[str, float]
    seeds: Seeds
    object: ObjectConfig
    probe: ProbeConfig
    scan: ScanConfig
    stitching: StitchingConfig
    scales: dict[str, ScaleConfig]
    adapted_gridsize: int | None = None
    hybrid: HybridConfig | None = None
    intervals: IntervalConfig = IntervalConfig()
    equal_fluence: EqualFluenceConfig | None = None
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    data: DataConfig = field(default_factory=DataConfig)
    errors: ErrorsConfig | None = None
    """Error axes (probe, positions, coherence); None: every arm gets the exact probe and
    positions (no error cells)."""
    variants: tuple[VariantConfig, ...] = ()
    """Extra arms (``variants:``), run beside ``arms`` with ids = their names."""

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, raw: dict, source: str = "<study>") -> StudyConfig:
        d = validate_with_defaults(raw, load_schema("study"), source)
        k = d["neighbours"]
        for g in d["gridsizes"]:
            if "pinn" in d["arms"] and k < g * g:
                raise ConfigError(
                    f"{source}: 'neighbours' (K = {k}) must be >= gridsize^2 = {g * g} "
                    f"for gridsize {g}"
                )
        if "pinn" in d["arms"] and not d["gridsizes"]:
            raise ConfigError(f"{source}: 'gridsizes' must not be empty when the pinn arm is used")
        adapted_g = None
        if "adapted" in d["arms"]:
            if "pinn" not in d["arms"]:
                raise ConfigError(f"{source}: the 'adapted' arm fine-tunes a trained PINN on the "
                                  "test scan; add 'pinn' to 'arms'")
            adapted_g = d["adaptation"]["gridsize"] or max(d["gridsizes"])
            if adapted_g not in d["gridsizes"]:
                raise ConfigError(f"{source}: 'adaptation/gridsize' is {adapted_g}, but the study "
                                  f"trains PINNs of gridsizes {d['gridsizes']} only")
        lo, hi = d["object"]["amplitude_range"]
        if lo > hi:
            raise ConfigError(f"{source}: 'object/amplitude_range' must be [min, max], got {[lo, hi]}")
        plo, phi = d["object"]["phase_range"]
        if plo > phi:
            raise ConfigError(f"{source}: 'object/phase_range' must be [min, max], got {[plo, phi]}")
        for part in ("object", "probe"):
            if d[part]["source"] == "file" and not d[part]["path"]:
                raise ConfigError(f"{source}: '{part}/path' is required when '{part}/source' is file")
        labels = [dose_label(x) for x in d["doses"]]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{source}: 'doses' {d['doses']} contain duplicates after formatting")
        scales = {}
        for name, s in d["scales"].items():
            H, W = s["object_size"]
            N = s["N"]
            if N + 2 > min(H, W) // 2:
                raise ConfigError(
                    f"{source}: 'scales/{name}': the probe (N = {N}) is too large for the object "
                    f"{H} x {W}; need N + 2 <= min(H, W) / 2 so both splits hold patches"
                )
            # filters, depth, support and learning rate follow N where the study leaves them out
            tr = fill_network_defaults(N, s["training"])
            check_backbone(N, tr["backbone"], tr["depth"], float(tr["support"]),
                           where=f"{source}: 'scales/{name}/training'")
            it = dict(s["iterative"])
            check_engine(it, f"{source}: scales/{name}/iterative")
            it["snapshots"] = snapshot_epochs(it["iterations"], it.get("snapshots"),
                                              f"{source}: 'scales/{name}/iterative/snapshots'")
            scales[name] = ScaleConfig(
                name=name,
                N=N,
                object_size=(H, W),
                chunk_size=s["chunk_size"],
                inference_batch_size=s["inference_batch_size"],
                training=TrainingConfig(**tr),
                iterative=IterativeConfig(**it),
                adaptation=AdaptationConfig(**s["adaptation"]),
                replicates=int(s["replicates"]),
                pixel_size_m=None if s["pixel_size_m"] is None else float(s["pixel_size_m"]),
            )
        o, p = d["object"], d["probe"]
        return cls(
            study=d["study"],
            description=d["description"],
            arms=tuple(d["arms"]),
            gridsizes=tuple(d["gridsizes"]),
            neighbours=k,
            doses=tuple(float(x) for x in d["doses"]),
            overlaps={kk: float(v) for kk, v in d["overlaps"].items()},
            seeds=Seeds(**d["seeds"]),
            object=ObjectConfig(
                source=o["source"], path=o["path"], amplitude_image=o["amplitude_image"],
                phase_image=o["phase_image"], amplitude_range=tuple(o["amplitude_range"]),
                phase_range=tuple(o["phase_range"]),
            ),
            probe=ProbeConfig(**p),
            scan=ScanConfig(**d["scan"]),
            stitching=StitchingConfig(**d["stitching"]),
            scales=scales,
            adapted_gridsize=adapted_g,
            hybrid=_hybrid_config(d, source, adapted_g),
            intervals=IntervalConfig(**d["intervals"]),
            equal_fluence=_equal_fluence(d, source),
            geometry=GeometryConfig(**d["geometry"]),
            data=_data_config(d, source),
            errors=_errors_config(d, source),
            variants=_variants_config(d, source),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        return cls.from_dict(read_study_file(path), source=str(path))

    # ----------------------------------------------------------------- views
    def to_dict(self) -> dict:
        """The resolved study, JSON-able. Options that are off (no error axes, iterative
        position correction off with its settings, the dataset's probe modes, a fixed PINN
        probe) are left out, so a study that does not
        use them records the same configuration (and writes the same dataset files) as before
        they existed."""
        out = json.loads(json.dumps(asdict(self)))
        if out.get("errors") is None:
            out.pop("errors", None)
        if not out.get("variants"):
            out.pop("variants", None)
        data = out.get("data") or {}
        if data.get("probe_source", "given") == "given":  # the files' probe: nothing recorded
            data.pop("probe_source", None)
            data.pop("probe_refinement", None)
        for sc in out.get("scales", {}).values():
            it = sc.get("iterative", {})
            if not it.get("refine_positions"):  # the correction's settings do nothing
                for key in _POSITION_KEYS:
                    it.pop(key, None)
            for key, off in _OFF_ITERATIVE.items():
                if it.get(key) == off:
                    it.pop(key)
            for key in _ENGINE_KEYS:  # None: the engine's default (LSQML when no engine)
                if key in it and it[key] is None:
                    it.pop(key)
            tr = sc.get("training", {})
            if not tr.get("train_probe"):  # a fixed probe: its learning rate does nothing
                for key in _TRAIN_PROBE_KEYS:
                    tr.pop(key, None)
            ad = sc.get("adaptation", {})
            if not ad.get("refine_probe"):  # a fixed probe: its learning rate does nothing
                for key in _ADAPT_PROBE_KEYS:
                    ad.pop(key, None)
        return out

    def scale(self, name: str) -> ScaleConfig:
        if name not in self.scales:
            raise ConfigError(f"unknown scale '{name}', expected one of {sorted(self.scales)}")
        return self.scales[name]

    def dose(self, label: str) -> float:
        for d in self.doses:
            if dose_label(d) == label:
                return d
        raise ConfigError(f"unknown dose label '{label}', expected one of {self.dose_labels}")

    def overlap(self, view: str) -> float:
        if view not in self.overlaps:
            raise ConfigError(f"unknown overlap view '{view}', expected one of {sorted(self.overlaps)}")
        return self.overlaps[view]

    @property
    def dose_labels(self) -> list[str]:
        return [dose_label(d) for d in self.doses]

    @property
    def arm_ids(self) -> list[str]:
        """Arm identifiers used in paths and tables: pinn_g1, pinn_g2, adapted_g2, baseline,
        iterative, hybrid (the order of ``arms``, PINN gridsizes expanded)."""
        return [a.name for a in self.identities]

    @property
    def identities(self) -> list[ArmIdentity]:
        """Every arm of the study as an :class:`ArmIdentity`: the built-in arms in the order of
        ``arms`` (PINN gridsizes expanded), then the variants in the order of ``variants``."""
        out = []
        for arm in self.arms:
            if arm == "pinn":
                out += [ArmIdentity.builtin_id("pinn", g) for g in self.gridsizes]
            elif arm == "adapted":
                out.append(ArmIdentity.builtin_id("adapted", self.adapted_gridsize))
            else:
                out.append(ArmIdentity.builtin_id(arm))
        return out + [v.identity for v in self.variants]

    def identity(self, arm_id: str) -> ArmIdentity:
        """The identity of one of the study's arm ids (a built-in id not in the study is parsed
        too); ConfigError for an unknown id."""
        for v in self.variants:
            if v.name == arm_id:
                return v.identity
        return ArmIdentity.parse(arm_id)

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"study '{self.study}' has no variant {name!r} (variants: "
                          f"{[v.name for v in self.variants]})")


def _network_arm_ids(d: dict, adapted_g: int | None) -> list[str]:
    out = ([ArmIdentity.builtin_id("pinn", g).name for g in d["gridsizes"]]
           if "pinn" in d["arms"] else [])
    out += [ArmIdentity.builtin_id("adapted", adapted_g).name] if adapted_g is not None else []
    return out + (["baseline"] if "baseline" in d["arms"] else [])


def _hybrid_config(d: dict, source: str, adapted_g: int | None = None) -> HybridConfig | None:
    """The hybrid arm's start network: the named one, which must be a network arm of the study,
    or by default pinn_g2 when the study has gridsize 2, else pinn_g1 (a fixed rule that looks at
    no result). None when the study has no hybrid arm."""
    if "hybrid" not in d["arms"]:
        return None
    networks = _network_arm_ids(d, adapted_g)
    start = (d.get("hybrid") or {}).get("start_from")
    if start is None:
        pinns = [a for a in ("pinn_g2", "pinn_g1") if a in networks]
        if not pinns:
            raise ConfigError(f"{source}: the hybrid arm starts from a network arm, but the study "
                              f"has no PINN arm to default to; set 'hybrid/start_from' to one of "
                              f"{networks} or add the pinn arm")
        start = pinns[0]
    elif start not in networks:
        raise ConfigError(f"{source}: 'hybrid/start_from' is {start!r}, which is not a network arm "
                          f"of this study; expected one of {networks}")
    return HybridConfig(start_from=start)


_OFF_ITERATIVE = {"refine_positions": False, "probe_modes": 0}
_POSITION_KEYS = ("position_correction", "position_start_epoch", "position_step_size",
                  "position_update_limit_px", "position_clip_by_mad", "position_momentum_gain")
_ENGINE_KEYS = ("engine", *ENGINE_KEYS)
_TRAIN_PROBE_KEYS = ("train_probe", "probe_learning_rate_scale")
_ADAPT_PROBE_KEYS = ("refine_probe", "probe_learning_rate_scale")


def is_network_arm(arm_id: str) -> bool:
    """True for the built-in network arms (pinn_g<g>, adapted_g<g>, baseline: results that
    depend on trained weights alone), False for the solver arms and any variant."""
    ident = ArmIdentity.try_parse(arm_id)
    return ident is not None and ident.is_network


def is_solver_arm(arm_id: str) -> bool:
    """True for the built-in pty-chi arms (iterative, hybrid), False for the trained networks and
    any other id (a variant's kind comes from its study: ``StudyConfig.identity``)."""
    ident = ArmIdentity.try_parse(arm_id)
    return ident is not None and ident.is_solver


def nominal_fluence_ratio(dose: float, overlap: float) -> float:
    """Fluence of a raster scan up to the common factor 1 / d^2: ``D / (1 - f)^2``.

    A raster at step s deposits on average D / s^2 photons per pixel (each exposure spreads D
    photons over the object), and s = d (1 - f) for the probe diameter d, so cells of equal
    ``D / (1 - f)^2`` share one fluence."""
    return float(dose) / (1.0 - float(overlap)) ** 2


def _equal_fluence(d: dict, source: str) -> EqualFluenceConfig | None:
    """The checked equal-fluence view: every cell is in the grid and the nominal fluences
    ``D / (1 - f)^2`` agree within the tolerance (relative spread max / min - 1)."""
    view = d.get("equal_fluence")
    if view is None:
        return None
    labels = [dose_label(x) for x in d["doses"]]
    cells, ratios = [], []
    for i, c in enumerate(view["cells"]):
        lab = dose_label(c["dose"])
        if lab not in labels:
            raise ConfigError(f"{source}: 'equal_fluence/cells/{i}/dose' {c['dose']} is not one of "
                              f"the study's doses {d['doses']}")
        if c["overlap"] not in d["overlaps"]:
            raise ConfigError(f"{source}: 'equal_fluence/cells/{i}/overlap' '{c['overlap']}' is "
                              f"not one of the overlap views {sorted(d['overlaps'])}")
        if (lab, c["overlap"]) in cells:
            raise ConfigError(f"{source}: 'equal_fluence/cells/{i}' repeats {lab} {c['overlap']}")
        cells.append((lab, c["overlap"]))
        ratios.append(nominal_fluence_ratio(c["dose"], d["overlaps"][c["overlap"]]))
    spread = max(ratios) / min(ratios) - 1.0
    if spread > view["tolerance"]:
        ref_dose, ref_view = view["cells"][0]["dose"], view["cells"][0]["overlap"]
        hint = ", ".join(
            f"{v}: dose {ratios[0] * (1 - d['overlaps'][v]) ** 2:.4g}" for _, v in cells[1:])
        raise ConfigError(
            f"{source}: 'equal_fluence': the cells do not share one fluence (D / (1 - f)^2 spread "
            f"{spread:.1%} > tolerance {view['tolerance']:.1%}); to match {ref_dose:g} photons at "
            f"{ref_view} use {hint}")
    return EqualFluenceConfig(cells=tuple(cells), tolerance=float(view["tolerance"]))


def arm_gridsize(arm_id: str) -> int:
    """Gridsize of an arm id (pinn_g2 and adapted_g2 -> 2; baseline, iterative and hybrid work
    on single patterns)."""
    return ArmIdentity.parse(arm_id).gridsize


def dose_label(dose: float) -> str:
    """Canonical wildcard string of a dose: 1000 -> '1e3', 25000 -> '2.5e4', 50 -> '5e1'."""
    dose = float(dose)
    if not math.isfinite(dose) or dose <= 0:
        raise ConfigError(f"dose must be a positive finite number of photons, got {dose}")
    exp = math.floor(math.log10(dose))
    mant = dose / 10**exp
    if mant >= 9.9995:  # rounding at the decade boundary
        exp += 1
        mant /= 10
    m = f"{mant:.3f}".rstrip("0").rstrip(".")
    return f"{m}e{exp}"


def load_run_config(raw: dict, source: str = "config") -> dict:
    """Validate the run configuration (which study, where results go)."""
    return validate_with_defaults(raw, load_schema("config"), source)
