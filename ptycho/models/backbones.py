"""Backbones shared by the PINN and the supervised baseline: diffraction amplitude in, object
amplitude and phase patches out. The PINN and the baseline of a study are built from the same
``BackboneSpec``, so they have the same architecture and parameter count (fairness); only what they
are trained against differs.

``cnn``      the original PtychoNN-style network: ``depth`` stages of a 3x3 ReLU convolution and a
             strided convolution, and two mirrored decoders of transposed convolutions (one for the
             amplitude, one for the phase); no skip connections, no normalisation.
``resunet``  a residual U-Net: a stem convolution, then ``depth`` (at most 4) levels of a residual
             block (GroupNorm + GELU + 3x3 convolution, twice, plus the identity) followed by a
             strided convolution that halves the patch and doubles the channels; two residual
             blocks at the bottleneck; a decoder that doubles the patch with a transposed
             convolution, concatenates the encoder's features of that size (skip connection) and
             applies a residual block; GroupNorm + GELU and two 3x3 output heads. The heads start
             at zero weight, so the untrained network is exactly the flat object (amplitude
             ``amplitude_init``, phase 0) and its first steps are not spent undoing a random start.

Heads: amplitude = sigmoid (in (0, 1)), phase = pi * tanh (in (-pi, pi)).

Object support (``support`` < 1): the network predicts only the centred ``support * N`` square of
the patch, where the probe is (PtychoPINN's ``pad_object``); the rest of the patch is the flat
object (``amplitude_init``, phase 0). Outside the probe a pattern constrains nothing, so the network
spends no capacity there; the decoder of the residual U-Net also stops at that smaller size.

Everything is built on call from explicit arguments; nothing is built at import time.
"""

from __future__ import annotations

import math

import keras

from ptycho.models.spec import BACKBONES, BackboneSpec, check_backbone


def _logit(a0: float) -> float:
    a0 = min(max(float(a0), 0.02), 0.98)
    return math.log(a0 / (1 - a0))


# ----------------------------------------------------------------------------- cnn
def cnn_encoder(x, filters: int, depth: int, prefix: str = "enc"):
    """``depth`` stages of a 3x3 ReLU convolution and a strided 3x3 ReLU convolution (each stage
    halves the patch and doubles the channels, starting at ``filters``)."""
    for i in range(depth):
        f = filters * 2**i
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"{prefix}{i}_conv")(x)
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu",
                                name=f"{prefix}{i}_down")(x)
    return x


def cnn_decoder(x, filters: int, depth: int, channels: int, activation: str, prefix: str,
                bias: float = 0.0):
    """Mirror of the encoder: ``depth`` strided 3x3 transposed ReLU convolutions (each doubles the
    patch), then a 3x3 convolution to ``channels`` outputs with ``activation`` (its bias starts at
    ``bias``)."""
    for i in reversed(range(depth)):
        f = filters * 2**i
        x = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu",
                                         name=f"{prefix}{i}_up")(x)
    return keras.layers.Conv2D(channels, 3, padding="same", activation=activation,
                               bias_initializer=keras.initializers.Constant(bias),
                               name=f"{prefix}_out")(x)


def _cnn_heads(x, spec: BackboneSpec, amplitude_init: float, prefix: str = ""):
    h = cnn_encoder(x, spec.filters, spec.depth, f"{prefix}enc")
    amp = cnn_decoder(h, spec.filters, spec.depth, 1, "sigmoid", f"{prefix}amp",
                      bias=_logit(amplitude_init))
    phase = cnn_decoder(h, spec.filters, spec.depth, 1, "tanh", f"{prefix}phase")
    return amp, phase


# ----------------------------------------------------------------------------- resunet
def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


def residual_block(x, channels: int, name: str):
    """GroupNorm + GELU + 3x3 convolution, twice, plus the input (a 1x1 convolution when the
    channel count changes)."""
    skip = x
    if x.shape[-1] != channels:
        skip = keras.layers.Conv2D(channels, 1, name=f"{name}_proj")(x)
    h = x
    for k in (1, 2):
        h = keras.layers.GroupNormalization(_groups(h.shape[-1]), name=f"{name}_norm{k}")(h)
        h = keras.layers.Activation("gelu", name=f"{name}_act{k}")(h)
        h = keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv{k}")(h)
    return keras.layers.Add(name=f"{name}_add")([skip, h])


def _resunet_heads(x, spec: BackboneSpec, amplitude_init: float, N: int, prefix: str = ""):
    f0, depth = spec.filters, spec.depth
    p = prefix
    h = keras.layers.Conv2D(f0, 3, padding="same", name=f"{p}stem")(x)
    skips = {}
    size = N
    for i in range(depth):
        h = residual_block(h, f0 * 2**i, f"{p}enc{i}")
        skips[size] = h
        h = keras.layers.Conv2D(f0 * 2 ** (i + 1), 3, strides=2, padding="same",
                                name=f"{p}enc{i}_down")(h)
        size //= 2
    for k in (1, 2):
        h = residual_block(h, f0 * 2**depth, f"{p}mid{k}")
    out = spec.output_size(N)
    level = depth
    while size < out:
        level -= 1
        size *= 2
        h = keras.layers.Conv2DTranspose(f0 * 2**level, 2, strides=2, name=f"{p}dec{level}_up")(h)
        h = keras.layers.Concatenate(name=f"{p}dec{level}_skip")([h, skips[size]])
        h = residual_block(h, f0 * 2**level, f"{p}dec{level}")
    h = keras.layers.GroupNormalization(_groups(h.shape[-1]), name=f"{p}head_norm")(h)
    h = keras.layers.Activation("gelu", name=f"{p}head_act")(h)
    amp = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name=f"{p}amp_out",
                              kernel_initializer="zeros",
                              bias_initializer=keras.initializers.Constant(_logit(amplitude_init)))(h)
    phase = keras.layers.Conv2D(1, 3, padding="same", activation="tanh", name=f"{p}phase_out",
                                kernel_initializer="zeros")(h)
    return amp, phase


# ----------------------------------------------------------------------------- support
@keras.saving.register_keras_serializable(package="ptycho")
class PadToPatch(keras.layers.Layer):
    """Centre an (S, S) prediction in an (N, N) patch filled with ``fill`` (the flat object)."""

    def __init__(self, N: int, fill: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)
        self.fill = float(fill)

    def call(self, x):
        import tensorflow as tf

        S = x.shape[1]
        a = (self.N - S) // 2
        b = self.N - S - a
        return tf.pad(x - self.fill, [[0, 0], [a, b], [a, b], [0, 0]]) + self.fill

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.N, self.N, input_shape[3])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(N=self.N, fill=self.fill)
        return cfg


def member_prefix(member: int) -> str:
    """The layer-name prefix of ensemble member ``member``: none for member 0 (so a one-network
    model has the layer names it always had), ``m<k>_`` for member k >= 1."""
    return "" if member == 0 else f"m{member}_"


def amplitude_phase(x, spec: BackboneSpec, N: int, amplitude_init: float = 0.5,
                    prefix: str = ""):
    """The backbone on network input ``x`` (B, N, N, 1): amplitude in (0, 1) and phase in
    (-pi, pi), each (B, N, N, 1). The amplitude starts near ``amplitude_init`` (exactly, for the
    resunet), the phase near 0. ``prefix`` starts every layer name (``member_prefix``)."""
    spec.check(N)
    p = prefix
    if spec.kind == "cnn":
        amp, phase = _cnn_heads(x, spec, amplitude_init, p)
        S = spec.output_size(N)
        if S < N:  # the cnn decodes the whole patch: keep its centre
            amp = keras.layers.CenterCrop(S, S, name=f"{p}amp_support")(amp)
            phase = keras.layers.CenterCrop(S, S, name=f"{p}phase_support")(phase)
    else:
        amp, phase = _resunet_heads(x, spec, amplitude_init, N, p)
    if spec.output_size(N) < N:
        a0 = 1 / (1 + math.exp(-_logit(amplitude_init)))
        amp = PadToPatch(N, a0, name=f"{p}amp_pad")(amp)
        phase = PadToPatch(N, 0.0, name=f"{p}phase_pad")(phase)
    phase = keras.layers.Rescaling(math.pi, name=f"{p}phase_scale")(phase)
    return amp, phase


def count_parameters(model: keras.Model) -> int:
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


__all__ = ["BACKBONES", "BackboneSpec", "PadToPatch", "amplitude_phase", "check_backbone",
           "count_parameters", "member_prefix", "residual_block"]
