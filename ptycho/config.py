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

from ptycho.errors import ConfigError
from ptycho.models.spec import check_backbone

ARMS = ("pinn", "adapted", "baseline", "iterative")
SCALES = ("scaled", "full")


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
                if "$ref" in sub:
                    sub = validator._resolver.lookup(sub["$ref"]).contents
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema_)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def validate_with_defaults(data: Any, schema: dict, source: str) -> dict:
    """Validate ``data`` against ``schema`` and fill defaults; raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
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
            raise ConfigError(f"{source}: invalid value at '{where}': {err.message}{hint}")
    return data


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


@dataclass(frozen=True)
class AdaptationConfig:
    """The ``adapted`` arm's fine-tuning on the test scan's counts (no labels)."""

    epochs: int
    learning_rate: float


@dataclass(frozen=True)
class IterativeConfig:
    iterations: int
    batch_size: int
    noise_model: str
    refine_probe: bool


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


@dataclass(frozen=True)
class StitchingConfig:
    phase_sync: bool
    refine_iterations: int


@dataclass(frozen=True)
class Seeds:
    simulation: int
    grouping: int
    training: int


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


@dataclass(frozen=True)
class DataConfig:
    """``source`` simulated (from object and probe) or external (``cells``, one per grid cell);
    ``ground_truth`` False: no object is used, evaluation is ground-truth free."""

    source: str = "simulated"
    ground_truth: bool = True
    cells: tuple[ExternalCell, ...] = ()

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


def _data_config(d: dict, source: str) -> DataConfig:
    dc = d["data"]
    if dc["source"] == "simulated":
        if dc["cells"]:
            raise ConfigError(f"{source}: 'data/cells' is only used with data/source: external")
        if not dc["ground_truth"]:
            raise ConfigError(f"{source}: 'data/ground_truth: false' needs data/source: external "
                              "(a simulated object is always known)")
        return DataConfig()
    if "baseline" in d["arms"] and not dc["ground_truth"]:
        raise ConfigError(f"{source}: 'data/ground_truth' is false but the supervised 'baseline' "
                          "arm trains on ground-truth patches; remove it from 'arms'")
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
                      cells=tuple(cells))


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
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    data: DataConfig = field(default_factory=DataConfig)

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
            tr = s["training"]
            check_backbone(N, tr["backbone"], tr["depth"], float(tr["support"]),
                           where=f"{source}: 'scales/{name}/training'")
            scales[name] = ScaleConfig(
                name=name,
                N=N,
                object_size=(H, W),
                chunk_size=s["chunk_size"],
                inference_batch_size=s["inference_batch_size"],
                training=TrainingConfig(**s["training"]),
                iterative=IterativeConfig(**s["iterative"]),
                adaptation=AdaptationConfig(**s["adaptation"]),
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
            geometry=GeometryConfig(**d["geometry"]),
            data=_data_config(d, source),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: study file not found")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    # ----------------------------------------------------------------- views
    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

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
        iterative (the order of ``arms``, PINN gridsizes expanded)."""
        out = []
        for arm in self.arms:
            if arm == "pinn":
                out += [f"pinn_g{g}" for g in self.gridsizes]
            elif arm == "adapted":
                out.append(f"adapted_g{self.adapted_gridsize}")
            else:
                out.append(arm)
        return out


def arm_gridsize(arm_id: str) -> int:
    """Gridsize of an arm id (pinn_g2 and adapted_g2 -> 2; baseline and iterative work on single
    patterns)."""
    for prefix in ("pinn_g", "adapted_g"):
        if arm_id.startswith(prefix) and arm_id[len(prefix):].isdigit():
            return int(arm_id[len(prefix):])
    if arm_id in ("baseline", "iterative"):
        return 1
    raise ConfigError(f"unknown arm id '{arm_id}'")


def dose_label(dose: float) -> str:
    """Canonical wildcard string of a dose: 1000 -> '1e3', 25000 -> '2.5e4', 50 -> '5e1'."""
    dose = float(dose)
    if not math.isfinite(dose) or dose <= 0:
        raise ConfigError(f"dose must be a positive finite number of photons, got {dose}")
    exp = int(math.floor(math.log10(dose)))
    mant = dose / 10**exp
    if mant >= 9.9995:  # rounding at the decade boundary
        exp += 1
        mant /= 10
    m = f"{mant:.3f}".rstrip("0").rstrip(".")
    return f"{m}e{exp}"


def load_run_config(raw: dict, source: str = "config") -> dict:
    """Validate the run configuration (which study, where results go)."""
    return validate_with_defaults(raw, load_schema("config"), source)
