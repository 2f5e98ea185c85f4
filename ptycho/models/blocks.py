"""Layers shared by the PINN and the supervised baseline (their backbones: ``ptycho.models.backbones``).

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
