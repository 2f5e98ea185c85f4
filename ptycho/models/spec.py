"""The architecture of a network arm as plain data (no Keras import): ``BackboneSpec`` and the
check that a backbone can take N x N patterns, used by the config validation before any job and by
the builders in ``ptycho.models.backbones``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ptycho.errors import ConfigError

BACKBONES = ("cnn", "resunet")
RESUNET_MAX_DEPTH = 2
SUPPORTS = (1.0, 0.5, 0.25)


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture of a network arm: ``kind`` (cnn | resunet), ``filters`` (channels of the first
    stage, doubled at every downsampling), ``depth`` (number of 2x downsamplings) and ``support``
    (fraction of the patch side the network predicts: 1, 0.5 or 0.25)."""

    kind: str = "cnn"
    filters: int = 16
    depth: int = 3
    support: float = 1.0

    @classmethod
    def from_training(cls, tc) -> BackboneSpec:
        """The spec of a ``TrainingConfig`` (its backbone, filters, depth and support)."""
        return cls(kind=getattr(tc, "backbone", "cnn"), filters=int(tc.filters),
                   depth=int(tc.depth), support=float(getattr(tc, "support", 1.0)))

    def check(self, N: int) -> None:
        """Raise ConfigError when this backbone cannot take N x N patterns."""
        check_backbone(N, self.kind, self.depth, self.support)

    def output_size(self, N: int) -> int:
        return round(N * self.support)


def check_backbone(N: int, kind: str, depth: int, support: float = 1.0, where: str = "") -> None:
    """Raise ConfigError naming the problem when a backbone cannot take N x N patterns: N must be
    divisible by 2**depth, the residual U-Net has at most two downsamplings, and the support must be
    1, 1/2 or 1/4 of N with the predicted square still divisible by the bottleneck size."""
    pre = f"{where}: " if where else ""
    if kind not in BACKBONES:
        raise ConfigError(f"{pre}backbone must be one of {BACKBONES}, got {kind!r}")
    if depth < 1:
        raise ConfigError(f"{pre}depth must be >= 1, got {depth}")
    if kind == "resunet" and depth > RESUNET_MAX_DEPTH:
        raise ConfigError(f"{pre}the resunet backbone has at most {RESUNET_MAX_DEPTH} "
                          f"downsamplings, got depth = {depth}")
    if N % (2**depth):
        raise ConfigError(f"{pre}N = {N} must be divisible by 2^depth = {2**depth} (depth = {depth})")
    if not any(math.isclose(support, s) for s in SUPPORTS):
        raise ConfigError(f"{pre}support must be one of {SUPPORTS}, got {support}")
    S = N * support
    if S != int(S) or int(S) % (N // 2**depth) or int(S) < N // 2**depth:
        raise ConfigError(f"{pre}support {support} of N = {N} gives a {S:g}-pixel square that the "
                          f"{N // 2**depth}-pixel bottleneck (depth {depth}) cannot be upsampled to")
