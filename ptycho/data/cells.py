"""Names of the grid cells of a study: ``{dose}_{overlap}_r{replicate}`` for the exact cell
(``1e3_dense_r0``) and ``{dose}_{overlap}_{level}_r{replicate}`` for the same cell at a model-error
level (``1e4_dense_probe25_r0``, ``1e4_dense_jitter0.5_r0``, docs/robustness.md).

A name is parsed against the study's dose labels, overlap view names and error-level labels (each
an alternation of the known names), so it is unambiguous as long as no overlap view name ends in
``_<level label>``, which :func:`check_cell_names` refuses.
"""

from __future__ import annotations

import re

from ptycho.errors import ConfigError

EXACT = ""
"""The level label of the exact cell (no model error)."""


def level_suffix(level: str) -> str:
    """The part of a cell name a level adds: '' for the exact cell, ``_probe25`` otherwise."""
    return "" if level in ("", "exact", None) else f"_{level}"


def cell_name(dose: str, overlap: str, replicate: int, level: str = EXACT) -> str:
    """``1e3_dense_r0`` (exact) or ``1e4_dense_probe25_r0`` (at error level ``probe25``)."""
    return f"{dose}_{overlap}{level_suffix(level)}_r{int(replicate)}"


def cell_pattern(doses, overlaps, levels) -> re.Pattern:
    """The regular expression of a study's cell names (groups dose, overlap, level, replicate)."""
    alt = lambda names: "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    lv = [x for x in levels if x not in ("", "exact")]
    level = f"(?:_(?P<level>{alt(lv)}))?" if lv else "(?P<level>)"
    return re.compile(f"(?P<dose>{alt(doses)})_(?P<overlap>{alt(overlaps)}){level}"
                      r"_r(?P<replicate>\d+)")


def parse_cell_name(name: str, doses, overlaps, levels=()) -> tuple[str, str, str, int]:
    """(dose label, overlap view, level label ('' exact), replicate) of a cell name; ConfigError
    for a name that is not a cell of the study."""
    m = cell_pattern(doses, overlaps, levels).fullmatch(name)
    if m is None:
        raise ConfigError(f"'{name}' is not a cell of the study (doses {list(doses)}, overlaps "
                          f"{list(overlaps)}, error levels {[x for x in levels if x]})")
    return m["dose"], m["overlap"], m["level"] or EXACT, int(m["replicate"])


def check_cell_names(overlaps, levels) -> None:
    """Refuse overlap view names that would make a cell name ambiguous with an error level."""
    for ov in overlaps:
        for lv in levels:
            if lv and ov.endswith(f"_{lv}"):
                raise ConfigError(f"overlap view '{ov}' ends in the error level '_{lv}': rename "
                                  "the view (cell names would be ambiguous)")


__all__ = ["EXACT", "cell_name", "cell_pattern", "check_cell_names", "level_suffix",
           "parse_cell_name"]
