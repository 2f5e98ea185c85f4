"""The architecture of a network arm as plain data (no Keras import): ``BackboneSpec``, the check
that a backbone can take N x N patterns (used by the config validation before any job and by the
builders in ``ptycho.models.backbones``) and ``network_defaults``, the settings a study's training
gets from the pattern size N where the study file does not set them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ptycho.errors import ConfigError

BACKBONES = ("cnn", "resunet")
RESUNET_MAX_DEPTH = 4
SUPPORTS = (1.0, 0.5, 0.25)
# The keys of a study's training that follow N when the study file leaves them out (null).
NETWORK_KEYS = ("filters", "depth", "support", "learning_rate", "ensemble", "epochs")
# The residual U-Net downsamples an N x N pattern until its bottleneck is this many pixels wide, so
# the bottleneck's receptive field spans the whole pattern at every N (N = 32: 2 downsamplings).
RESUNET_BOTTLENECK_PX = 8
# The plain CNN's defaults (independent of N).
CNN_DEFAULTS = {"filters": 16, "depth": 3, "support": 1.0, "learning_rate": 0.001, "ensemble": 1,
                "epochs": 20}
# Networks per trained arm (an ensemble whose patches are all stitched) of the residual U-Net
# above N = 32; one up to N = 32 (docs/performance.md, "Ensembles").
RESUNET_ENSEMBLE_ABOVE_32 = 3
# Most epochs of the residual U-Net's trained arms: 10 up to N = 32 (the default study), 20 above,
# where the networks were still improving after 10 (docs/performance.md, "Epochs above N = 32").
RESUNET_EPOCHS = {"small": 10, "above_32": 20}
MAX_ENSEMBLE = 8


def resunet_depth(N: int) -> int:
    """Downsamplings of the residual U-Net for N x N patterns: log2(N / 8) rounded (so the
    bottleneck is about 8 pixels), at least 1 and at most ``RESUNET_MAX_DEPTH``, lowered until N is
    divisible by 2**depth (N = 16, 32, 64, 128: 1, 2, 3, 4)."""
    d = min(max(1, round(math.log2(max(N, 1) / RESUNET_BOTTLENECK_PX))), RESUNET_MAX_DEPTH)
    while d > 1 and N % (2**d):
        d -= 1
    return d


def network_defaults(N: int, backbone: str) -> dict:
    """The filters, depth, support, learning rate, ensemble size and most epochs of a ``backbone``
    for N x N patterns, as a study gets them where its file does not set them.

    resunet: ``resunet_depth(N)`` downsamplings and support 1/2 at every N; 16 filters, learning
    rate 0.002, one network and 10 epochs up to N = 32 (the default study's scaled settings,
    exactly); 8 filters, 0.001, an ensemble of ``RESUNET_ENSEMBLE_ABOVE_32`` networks and 20
    epochs above (measured at N = 64: 16 filters cost 4x the parameters and 3.8x the time for SSIM
    within the cross-machine spread; 0.001 gave the better phase; three networks lifted every
    arm's amplitude SSIM and put pinn_g2 and the baseline above the flat object's; after 10
    epochs their validation loss was still falling, and 20 put pinn_g1 above the flat object's
    amplitude SSIM too). cnn: ``CNN_DEFAULTS`` at every N."""
    if backbone == "resunet":
        small = N <= 32
        return {"filters": 16 if small else 8, "depth": resunet_depth(N), "support": 0.5,
                "learning_rate": 0.002 if small else 0.001,
                "ensemble": 1 if small else RESUNET_ENSEMBLE_ABOVE_32,
                "epochs": RESUNET_EPOCHS["small" if small else "above_32"]}
    return dict(CNN_DEFAULTS)


def fill_network_defaults(N: int, training: dict) -> dict:
    """``training`` (a study's training mapping) with every ``NETWORK_KEYS`` entry that is missing
    or None set from ``network_defaults(N, backbone)``; values the study sets are kept."""
    out = dict(training)
    rule = network_defaults(N, out.get("backbone") or "cnn")
    for key in NETWORK_KEYS:
        if out.get(key) is None:
            out[key] = rule[key]
    return out


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture of a network arm: ``kind`` (cnn | resunet), ``filters`` (channels of the first
    stage, doubled at every downsampling), ``depth`` (number of 2x downsamplings) and ``support``
    (fraction of the patch side the network predicts: 1, 0.5 or 0.25) and ``ensemble`` (how many
    such networks, trained side by side from different random starts, each pattern goes through;
    every member's patch is stitched)."""

    kind: str = "cnn"
    filters: int = 16
    depth: int = 3
    support: float = 1.0
    ensemble: int = 1

    @classmethod
    def from_training(cls, tc) -> BackboneSpec:
        """The spec of a ``TrainingConfig`` (its backbone, filters, depth, support and ensemble)."""
        return cls(kind=getattr(tc, "backbone", "cnn"), filters=int(tc.filters),
                   depth=int(tc.depth), support=float(getattr(tc, "support", 1.0)),
                   ensemble=int(getattr(tc, "ensemble", 1) or 1))

    def check(self, N: int) -> None:
        """Raise ConfigError when this backbone cannot take N x N patterns."""
        check_backbone(N, self.kind, self.depth, self.support)
        check_ensemble(self.ensemble)

    def output_size(self, N: int) -> int:
        return round(N * self.support)


def check_ensemble(ensemble, where: str = "") -> None:
    """Raise ConfigError unless ``ensemble`` is a whole number of networks in 1..MAX_ENSEMBLE."""
    pre = f"{where}: " if where else ""
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or not (
            1 <= ensemble <= MAX_ENSEMBLE):
        raise ConfigError(f"{pre}ensemble must be a whole number of networks from 1 to "
                          f"{MAX_ENSEMBLE}, got {ensemble!r}")


def check_backbone(N: int, kind: str, depth: int, support: float = 1.0, where: str = "") -> None:
    """Raise ConfigError naming the problem when a backbone cannot take N x N patterns: N must be
    divisible by 2**depth, the residual U-Net has at most ``RESUNET_MAX_DEPTH`` downsamplings, and
    the support must be 1, 1/2 or 1/4 of N with the predicted square still divisible by the
    bottleneck size."""
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
