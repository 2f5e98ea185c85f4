"""Physics-informed network (PINN): unsupervised, trained on counts through the known forward model.

Input: the counts of the C = g^2 patterns of a group, (B, N, N, C) channels-last, turned into
sqrt(counts) / norm inside the model (``CountsToAmplitude``); for g = 2 also the offsets of the
members from the group's seed, (B, C, 2) pixels (y, x). A convolutional encoder feeds an amplitude
(sigmoid) and a phase (pi * tanh) decoder that predict C object patches. For g = 2 the real-space
overlap constraint (``OverlapConstraint``) makes overlapping patches agree. The physics layer
(``PoissonForward``) maps the patches to expected counts; the loss is the Poisson NLL (no labels).

Layer names used by inference: ``object_patches`` outputs the (real, imaginary) patches that the
physics layer sees; ``physics`` is the forward model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ptycho.errors import ConfigError
from ptycho.models.blocks import (AmpPhaseToComplex, CountsToAmplitude, amplitude_phase_heads,
                                  check_depth, encoder)
from ptycho.models.physics_layer import PoissonForward


def interpolation_matrices(offsets: tf.Tensor, N: int) -> tf.Tensor:
    """Linear-interpolation placement matrices W (B, C, 2N, N) for one axis.

    Patch pixel i of a member at offset o from the seed sits at canvas pixel u = i + N/2 + o of a
    2N canvas centred on the seed (the seed's patch spans [N/2, 3N/2)); W[u, i] = max(0, 1 - |u - i
    - N/2 - o|). Integer offsets give a 0/1 matrix (exact placement); a fractional part splits a
    pixel between its two neighbours, with no ringing at the patch edge.
    """
    u = tf.range(2 * N, dtype=tf.float32)[:, None]
    i = tf.range(N, dtype=tf.float32)[None, :]
    d = u - i - N / 2  # (2N, N)
    o = tf.cast(offsets, tf.float32)[..., None, None]  # (B, C, 1, 1)
    return tf.nn.relu(1.0 - tf.abs(d - o))


@keras.saving.register_keras_serializable(package="ptycho")
class OverlapConstraint(keras.layers.Layer):
    """Real-space overlap constraint of a group (g >= 2).

    The C predicted patches (real and imaginary parts, each (B, N, N, C)) are placed on a shared
    2N x 2N canvas at their offsets (B, C, 2) from the seed, averaged where they overlap (weights =
    each patch's support, placed the same way), and cut out again at the same offsets. Patches cut
    from one consistent object at integer offsets come back unchanged; inconsistent patches are
    replaced by their consensus, so the physics layer only sees patches that agree.
    """

    def __init__(self, N: int, eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)
        self.eps = float(eps)

    def call(self, inputs):
        re, im, offsets = inputs
        N = self.N
        wy = interpolation_matrices(offsets[..., 0], N)[:, :, None]  # (B, C, 1, 2N, N)
        wx = interpolation_matrices(offsets[..., 1], N)[:, :, None]
        z = tf.stack([re, im], axis=1)  # (B, 2, N, N, C)
        z = tf.transpose(z, (0, 4, 1, 2, 3))  # (B, C, 2, N, N)
        # canvas = sum_c Wy_c @ patch_c @ Wx_c^T; support = sum_c Wy_c @ 1 @ Wx_c^T
        placed = tf.reduce_sum(tf.matmul(tf.matmul(wy, z), wx, transpose_b=True), axis=1)
        sy, sx = tf.reduce_sum(wy, -1), tf.reduce_sum(wx, -1)  # (B, C, 1, 2N)
        support = tf.reduce_sum(sy[..., :, None] * sx[..., None, :], axis=1)  # (B, 1, 2N, 2N)
        mean = placed / tf.maximum(support, self.eps)  # (B, 2, 2N, 2N)
        out = tf.matmul(tf.matmul(wy, mean[:, None], transpose_a=True), wx)  # (B, C, 2, N, N)
        out = tf.transpose(out, (0, 2, 3, 4, 1))  # (B, 2, N, N, C)
        return [out[:, 0], out[:, 1]]

    def compute_output_shape(self, input_shape):
        return [input_shape[0], input_shape[0]]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(N=self.N, eps=self.eps)
        return cfg


def build_pinn(N: int, gridsize: int, dose: float, probe: np.ndarray, norm: float,
               filters: int, depth: int) -> keras.Model:
    """The PINN training model: inputs ``counts`` (B, N, N, C) [and ``offsets`` (B, C, 2) for
    g >= 2] -> expected counts (B, N, N, C) photons at ``dose``."""
    if gridsize not in (1, 2):
        raise ConfigError(f"gridsize must be 1 or 2, got {gridsize}")
    check_depth(N, depth)
    C = gridsize * gridsize
    counts = keras.Input((N, N, C), name="counts")
    inputs = [counts]
    x = CountsToAmplitude(norm, name="amplitude_input")(counts)
    h = encoder(x, filters, depth)
    amp, phase = amplitude_phase_heads(h, filters, depth, C)
    if gridsize == 1:
        re, im = AmpPhaseToComplex(name="object_patches")([amp, phase])
    else:
        offsets = keras.Input((C, 2), name="offsets")
        inputs.append(offsets)
        re, im = AmpPhaseToComplex(name="raw_patches")([amp, phase])
        re, im = OverlapConstraint(N, name="object_patches")([re, im, offsets])
    lam = PoissonForward(N, dose, probe, name="physics")([re, im])
    return keras.Model(inputs, lam, name=f"pinn_g{gridsize}")


def object_model(model: keras.Model) -> keras.Model:
    """The sub-model from a PINN's inputs to its object patches (real, imaginary)."""
    return keras.Model(model.inputs, model.get_layer("object_patches").output)
