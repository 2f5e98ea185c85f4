"""The identity of a reconstruction arm, parsed and produced in one place.

An arm id is what paths, tables and figures show: ``pinn_g1``, ``pinn_g2``, ``adapted_g2``,
``baseline``, ``iterative``, ``hybrid`` for the built-in arms, or a variant's name (the study's
``variants:`` section). :class:`ArmIdentity` holds what the id stands for: the ``kind`` of method
(a built-in arm, ``external_command`` or ``plugin``), the gridsize of its patterns and, for a
variant, the variant's name and what it names (``target``: a built-in kind, an entry point of the
group ``ptycho_dose.arms`` or ``module:Class``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ptycho.errors import ConfigError

NETWORK_KINDS = ("pinn", "adapted", "baseline")
SOLVER_KINDS = ("iterative", "hybrid")
BUILTIN_KINDS = NETWORK_KINDS + SOLVER_KINDS
EXTERNAL_COMMAND = "external_command"
PLUGIN = "plugin"
# kinds a variant may name directly (the others are reached through a plugin)
VARIANT_KINDS = ("iterative", EXTERNAL_COMMAND)
_GRIDDED = {"pinn": "pinn_g", "adapted": "adapted_g"}
VARIANT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class ArmIdentity:
    """One arm: ``name`` (its id in paths and tables), ``kind`` (pinn, adapted, baseline,
    iterative, hybrid, external_command or plugin), ``gridsize`` (patterns per group it
    reconstructs from: 1 except for the gridsize-g PINN arms), ``variant`` (None for a built-in
    arm; else the variant's name, equal to ``name``) and ``target`` (a plugin's entry-point name or
    ``module:Class``; None otherwise)."""

    name: str
    kind: str
    gridsize: int = 1
    variant: str | None = None
    target: str | None = None

    @property
    def is_solver(self) -> bool:
        """A pty-chi solve (iterative, hybrid, or a variant of the iterative arm)."""
        return self.kind in SOLVER_KINDS

    @property
    def is_network(self) -> bool:
        """A built-in network arm (trained or adapted; has a model bundle and a training history)."""
        return self.kind in NETWORK_KINDS

    @property
    def is_variant(self) -> bool:
        return self.variant is not None

    @property
    def builtin(self) -> bool:
        """A built-in arm id with its own rules (not a variant)."""
        return self.variant is None

    @classmethod
    def builtin_id(cls, kind: str, gridsize: int | None = None) -> ArmIdentity:
        """The identity of a built-in arm: ``builtin_id('pinn', 2).name == 'pinn_g2'``."""
        if kind in _GRIDDED:
            if gridsize is None or int(gridsize) < 1:
                raise ConfigError(f"the {kind} arm needs a gridsize >= 1, got {gridsize!r}")
            return cls(f"{_GRIDDED[kind]}{int(gridsize)}", kind, int(gridsize))
        if kind in BUILTIN_KINDS:
            return cls(kind, kind, 1)
        raise ConfigError(f"unknown built-in arm kind {kind!r}, expected one of {BUILTIN_KINDS}")

    @classmethod
    def parse(cls, arm_id: str) -> ArmIdentity:
        """The identity of a built-in arm id (pinn_g2 -> kind pinn, gridsize 2); ConfigError for
        any other id (a variant's identity comes from its study)."""
        arm_id = str(arm_id)
        for kind, prefix in _GRIDDED.items():
            if arm_id.startswith(prefix) and arm_id[len(prefix):].isdigit():
                return cls(arm_id, kind, int(arm_id[len(prefix):]))
        if arm_id in ("baseline",) + SOLVER_KINDS:
            return cls(arm_id, arm_id, 1)
        raise ConfigError(f"unknown arm id '{arm_id}'")

    @classmethod
    def try_parse(cls, arm_id: str) -> ArmIdentity | None:
        try:
            return cls.parse(arm_id)
        except ConfigError:
            return None

    @classmethod
    def of_variant(cls, name: str, arm: str) -> ArmIdentity:
        """A variant named ``name`` of ``arm``: a kind of :data:`VARIANT_KINDS`, an entry-point
        name or ``module:Class`` (then kind ``plugin``)."""
        if arm in VARIANT_KINDS:
            return cls(name, arm, 1, variant=name)
        return cls(name, PLUGIN, 1, variant=name, target=arm)


def is_builtin_id(arm_id: str) -> bool:
    """True for an id of a built-in arm (pinn_g<g>, adapted_g<g>, baseline, iterative, hybrid)."""
    return ArmIdentity.try_parse(arm_id) is not None


def check_variant_name(name, where: str) -> None:
    """A variant's name becomes a path component and a table label: lower-case letters, digits
    and underscores, a letter first, and not a built-in arm id or kind."""
    if not isinstance(name, str) or not VARIANT_NAME.match(name):
        raise ConfigError(f"{where}: variant name {name!r} must be lower-case letters, digits and "
                          "underscores, starting with a letter (at most 48 characters)")
    if is_builtin_id(name) or name in BUILTIN_KINDS + (EXTERNAL_COMMAND, PLUGIN):
        raise ConfigError(f"{where}: variant name {name!r} collides with a built-in arm; choose "
                          "another name")
