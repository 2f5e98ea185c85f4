"""Building blocks shared by the PINN and the supervised baseline (one encoder/decoder family).

Everything is built on call from explicit arguments; nothing is built at import time. Layers are
registered with Keras so a saved ``model.keras`` reloads without extra arguments.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from ptycho.errors import ConfigError


@keras.saving.register_keras_serializable(package="ptycho")
class CountsToAmplitude(keras.layers.Layer):
    """Network input: sqrt(counts) / norm, the one normalisation of the model (recorded in the
    bundle). Living inside the model, it is applied exactly once, in training and in inference."""

    def __init__(self, norm: float, **kwargs):
        super().__init__(**kwargs)
        self.norm = float(norm)
        if not (math.isfinite(self.norm) and self.norm > 0):
            raise ConfigError(f"input normalisation must be a positive number, got {norm}")

    def call(self, counts):
        return tf.sqrt(tf.nn.relu(counts)) / self.norm

    def get_config(self):
        cfg = super().get_config()
        cfg.update(norm=self.norm)
        return cfg


@keras.saving.register_keras_serializable(package="ptycho")
class AmpPhaseToComplex(keras.layers.Layer):
    """(amplitude, phase) -> (real, imaginary) parts of the object patches."""

    def call(self, inputs):
        amp, phase = inputs
        return [amp * tf.cos(phase), amp * tf.sin(phase)]

    def compute_output_shape(self, input_shape):
        return [input_shape[0], input_shape[0]]


def check_depth(N: int, depth: int) -> None:
    if N % (2**depth):
        raise ConfigError(f"N = {N} must be divisible by 2^depth = {2**depth} (depth = {depth})")


def encoder(x, filters: int, depth: int, prefix: str = "enc"):
    """``depth`` stages of a 3x3 ReLU convolution and a strided 3x3 ReLU convolution (each stage
    halves the patch and doubles the channels, starting at ``filters``)."""
    for i in range(depth):
        f = filters * 2**i
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"{prefix}{i}_conv")(x)
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu",
                                name=f"{prefix}{i}_down")(x)
    return x


def decoder(x, filters: int, depth: int, channels: int, activation: str, prefix: str,
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


def amplitude_phase_heads(h, filters: int, depth: int, channels: int, amplitude_init: float = 0.5):
    """Amplitude in (0, 1) (sigmoid) and phase in (-pi, pi) (pi * tanh), each (B, N, N, channels).

    The amplitude head starts near ``amplitude_init`` (its output bias is logit(amplitude_init)) and
    the phase head near 0, i.e. close to a flat object of that transmission.
    """
    a0 = min(max(float(amplitude_init), 0.02), 0.98)
    amp = decoder(h, filters, depth, channels, "sigmoid", "amp", bias=math.log(a0 / (1 - a0)))
    phase = decoder(h, filters, depth, channels, "tanh", "phase")
    phase = keras.layers.Rescaling(math.pi, name="phase_scale")(phase)
    return amp, phase
