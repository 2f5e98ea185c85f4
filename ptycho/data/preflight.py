"""Checks of what a study names, run by the workflow before any job (workflow/rules/common.smk).

Everything here needs the study alone (and the object/probe files it names), no simulation, so a
problem that a ``simulate_dataset`` job would find after minutes stops the run at once with one
line naming the study file, the key and what was expected:

- ``prepare_study``: read the study file (safe YAML, size and alias caps, finite numbers), validate it
  against the schema with defaults and cross-check it (``StudyConfig.from_dict``), then
- ``check_study_files``: the object and probe files exist, are readable 2-D finite arrays, the
  object's amplitude lies in (0, 1] and the probe is square and not zero (at parse time);
- ``check_scale``: for one scale, the probe (simulated, or the file's, which must be N x N) and,
  for every overlap view, the scan step (at least half a pixel), the positions that fit the object
  and the train/test split (when the DAG is built, once per scale that is run), and that every
  probe-error level of the study's ``errors`` is one its probe can produce.
"""

from __future__ import annotations

from ptycho.config import StudyConfig, load_schema, read_study_file, validate_with_defaults
from ptycho.data.generate import build_probe, scan_geometry
from ptycho.errors import ConfigError, PtychoError
from ptycho.physics.object import load_complex_array, load_object


def study_files(study: StudyConfig) -> list[str]:
    """The object and probe files the study names (inputs of every simulation job)."""
    return [part.path for part in (study.object, study.probe) if part.source == "file"]


def _check_probe_file(path) -> None:
    probe = load_complex_array(path, "probe", "probeGuess", "probe")
    if probe.shape[0] != probe.shape[1]:
        raise ConfigError(f"{path}: probe has shape {probe.shape}, expected a square (N, N) array")
    if not (abs(probe) ** 2).sum() > 0:
        raise ConfigError(f"{path}: probe is zero everywhere")


def check_study_files(study: StudyConfig, source: str) -> list[str]:
    """Load and check the object and probe files the study names; return their paths."""
    for part, check in (("object", load_object), ("probe", _check_probe_file)):
        cfg = getattr(study, part)
        if cfg.source != "file":
            continue
        try:
            check(cfg.path)
        except PtychoError as exc:
            raise ConfigError(f"{source}: '{part}/path': {exc}") from None
    return study_files(study)


def check_scale(study: StudyConfig, scale_name: str, source: str) -> None:
    """Check the probe and the scan geometry of every overlap view at one scale."""
    scale = study.scale(scale_name)
    try:
        probe = build_probe(study, scale)
    except PtychoError as exc:
        raise ConfigError(f"{source}: 'probe' at scale '{scale_name}': {exc}") from None
    if study.object.source == "file":
        shape = load_object(study.object.path).shape
    else:
        shape = scale.object_size
    if study.errors is not None:  # every probe-error level must be one the probe can produce
        from ptycho.data.generate import nominal_inputs

        for level in study.errors.levels():
            if level.kind == "positions":
                continue
            try:
                nominal_inputs(study, scale, level, probe, "", shape)
            except PtychoError as exc:
                raise ConfigError(f"{source}: at scale '{scale_name}': {exc}") from None
    for view, f in study.overlaps.items():
        try:
            scan_geometry(study, scale, shape, probe, view)
        except PtychoError as exc:
            raise ConfigError(f"{source}: 'overlaps/{view}' (f = {f}) at scale '{scale_name}' "
                              f"(N = {scale.N}, object {shape[0]} x {shape[1]}): {exc}") from None


def scan_patterns(study: StudyConfig, scale_name: str, overlap_view: str) -> tuple[int, int]:
    """(train, test) patterns of a simulated cell at one scale and overlap view, from the scan
    geometry alone (no simulation): what a network job of that cell trains on and reconstructs."""
    if study.data.external:
        raise ConfigError("scan_patterns: the study reads external data; its pattern counts are "
                          "in the imported files")
    scale = study.scale(scale_name)
    shape = (load_object(study.object.path).shape if study.object.source == "file"
             else tuple(scale.object_size))
    _, train, test, _ = scan_geometry(study, scale, shape, build_probe(study, scale), overlap_view)
    return len(train), len(test)


def prepare_study(path) -> tuple[dict, StudyConfig, list[str]]:
    """What the workflow does with a study file before building its DAG: the validated study dict
    (defaults filled; what every job receives), the typed study and the files it names."""
    source = str(path)
    study_dict = validate_with_defaults(read_study_file(path), load_schema("study"), source)
    study = StudyConfig.from_dict(study_dict, source=source)
    return study_dict, study, check_study_files(study, source)


__all__ = ["check_scale", "check_study_files", "prepare_study", "scan_patterns", "study_files"]
