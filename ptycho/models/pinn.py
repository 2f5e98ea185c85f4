"""Physics-informed network (PINN): unsupervised, trained on counts through the known forward model.

Input: the counts of the C = g^2 patterns of a group, (B, N, N, C) channels-last, turned into
sqrt(counts) / norm inside the model (``CountsToAmplitude``); for g = 2 also the offsets of the
members from the group's seed, (B, C, 2) pixels (y, x). The backbone
(``ptycho.models.backbones``: cnn or resunet) gives an amplitude (sigmoid) and a phase
(pi * tanh); the same backbone (shared weights) turns each of the C patterns into its object
patch, so g = 1 and g = 2 have the same network and differ only by the constraint. For g = 2 the real-space overlap constraint (``OverlapConstraint``) makes
overlapping patches agree. The physics layer (``PoissonForward``) maps the patches to expected
counts; the loss is the Poisson NLL (no labels).

Layer names used by inference: ``object_patches`` outputs the (real, imaginary) patches that the
physics layer sees; ``physics`` is the forward model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ptycho.errors import ConfigError
from ptycho.models.backbones import BackboneSpec, amplitude_phase, member_prefix
from ptycho.models.blocks import AmpPhaseToComplex, CountsToAmplitude
from ptycho.models.physics_layer import PoissonForward

# added to the normalised probe intensity in the overlap constraint's weights, so that canvas
# pixels no probe lights still get the plain average of the members that cover them
MEMBER_WEIGHT_FLOOR = 1e-3


def interpolation_matrices(offsets, N: int) -> tf.Tensor:
    """Placement matrices W (..., 2N, N) along one axis for members at ``offsets`` (...).

    Patch pixel i of a member at offset o from the seed sits at canvas pixel u = i + N/2 + o of a
    2N canvas centred on the seed (the seed's patch spans [N/2, 3N/2)); W[u, i] = max(0, 1 - |u - i
    - N/2 - o|). Integer offsets give a 0/1 matrix (exact placement); a fractional part is linear
    interpolation between the two nearest pixels (positive weights, so no ringing at the patch
    edge and no division by near-zero supports).
    """
    u = tf.range(2 * N, dtype=tf.float32)[:, None]
    i = tf.range(N, dtype=tf.float32)[None, :]
    o = tf.cast(offsets, tf.float32)[..., None, None]
    return tf.nn.relu(1.0 - tf.abs(u - i - N / 2 - o))


def align_member_phases(placed):
    """Rotate every member of a group onto its seed's phase offset.

    ``placed`` (B, C, 2, H, W): the members' weighted (real, imaginary) patches on the group's
    canvas, member 0 the seed. Member m is multiplied by exp(i theta_m), theta_m the phase of
    sum z_0 conj(z_m) over the canvas (the offset that best matches the seed where both are
    placed; theta_0 = 0). A diffraction pattern does not fix its patch's phase offset, so a
    network that turns each pattern into its patch on its own cannot make neighbours' offsets
    agree; averaging members with different offsets would wash the consensus out.
    """
    r0, i0 = placed[:, :1, 0], placed[:, :1, 1]
    rm, im = placed[:, :, 0], placed[:, :, 1]
    sr = tf.reduce_sum(r0 * rm + i0 * im, axis=(-2, -1))[..., None, None]  # (B, C, 1, 1)
    si = tf.reduce_sum(i0 * rm - r0 * im, axis=(-2, -1))[..., None, None]
    mag = tf.sqrt(sr * sr + si * si + 1e-30)
    cr, ci = sr / mag, si / mag
    return tf.stack([rm * cr - im * ci, rm * ci + im * cr], axis=2)


def overlap_average(re, im, offsets, N: int, eps: float = 1e-6, weight=None,
                    align_phases: bool = False):
    """Place (Wy @ (w patch) @ Wx^T), divide by the placed weights, cut out (Wy^T @ mean @ Wx).

    re, im: (B, N, N, C); offsets (B, C, 2) pixels of each member from its seed, |offset| < N/2;
    ``weight`` (N, N) non-negative per-pixel weight of every member (``None``: uniform), so that
    where patches overlap the members that see a pixel best dominate the consensus;
    ``align_phases``: first rotate each member onto the seed's phase offset
    (``align_member_phases``); returns (re, im) (B, N, N, C).
    """
    offsets = tf.cast(offsets, tf.float32)
    wy = interpolation_matrices(offsets[..., 0], N)[:, :, None]  # (B, C, 1, 2N, N)
    wx = interpolation_matrices(offsets[..., 1], N)[:, :, None]
    z = tf.transpose(tf.stack([re, im], axis=1), (0, 4, 1, 2, 3))  # (B, C, 2, N, N)
    w = tf.ones((N, N), tf.float32) if weight is None else tf.cast(weight, tf.float32)
    members = tf.matmul(tf.matmul(wy, z * w), wx, transpose_b=True)  # (B, C, 2, 2N, 2N)
    if align_phases:
        members = align_member_phases(members)
    placed = tf.reduce_sum(members, axis=1)
    support = tf.reduce_sum(tf.matmul(tf.matmul(wy, w), wx, transpose_b=True), axis=1)  # (B,1,2N,2N)
    mean = placed / tf.maximum(support, eps)  # (B, 2, 2N, 2N)
    out = tf.matmul(tf.matmul(wy, mean[:, None], transpose_a=True), wx)  # (B, C, 2, N, N)
    out = tf.transpose(out, (0, 2, 3, 4, 1))  # (B, 2, N, N, C)
    return out[:, 0], out[:, 1]


@keras.saving.register_keras_serializable(package="ptycho")
class GroupToBatch(keras.layers.Layer):
    """(B, N, N, C) -> (B * C, N, N, 1): the C patterns of each group become batch items."""

    def call(self, x):
        s = tf.shape(x)
        return tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (s[0] * s[3], s[1], s[2], 1))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[1], input_shape[2], 1)


@keras.saving.register_keras_serializable(package="ptycho")
class BatchToGroup(keras.layers.Layer):
    """(B * C, N, N, 1) -> (B, N, N, C), the inverse of ``GroupToBatch``."""

    def __init__(self, C: int, **kwargs):
        super().__init__(**kwargs)
        self.C = int(C)

    def call(self, x):
        s = tf.shape(x)
        return tf.transpose(tf.reshape(x, (s[0] // self.C, self.C, s[1], s[2])), (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[1], input_shape[2], self.C)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(C=self.C)
        return cfg


@keras.saving.register_keras_serializable(package="ptycho")
class OverlapConstraint(keras.layers.Layer):
    """Real-space overlap constraint of a group (g >= 2).

    The C predicted patches (real and imaginary parts, each (B, N, N, C)) are placed on a shared
    2N x 2N canvas centred on the seed, member c at its offset (B, C, 2) from the seed (patch pixel i
    at canvas pixel i + N/2 + offset; ``interpolation_matrices``: exact for integer offsets, linear
    interpolation for the fractional part), averaged where they overlap, and cut out again at the
    same offsets. The average weights every member's pixels by ``weight`` (N, N), placed the same
    way; the PINN uses the probe intensity |P|^2 / max |P|^2 plus ``MEMBER_WEIGHT_FLOOR``, so where
    members overlap, the ones whose probe lights a pixel (whose pattern constrains it) dominate the
    consensus, and each member's unconstrained patch edge barely moves its neighbours' centres.
    ``weight=None`` averages uniformly over the patches' supports. ``align_phases``: each member is
    first rotated onto the seed's phase offset (``align_member_phases``), so members whose
    offsets differ by a constant still agree (the consensus then carries the seed's offset).
    Patches cut from one consistent object at integer offsets come back unchanged; inconsistent
    patches are replaced by their consensus, so the physics layer only sees patches that agree.
    The weight is stored as a non-trainable variable, saved with the model.
    """

    def __init__(self, N: int, eps: float = 1e-6, weight: np.ndarray | None = None,
                 weighted: bool | None = None, align_phases: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)
        self.eps = float(eps)
        self.align_phases = bool(align_phases)
        self.weighted = bool(weight is not None if weighted is None else weighted)
        self._weight_init = None if weight is None else np.asarray(weight, dtype=np.float32)
        if self._weight_init is not None and (self._weight_init.shape != (self.N, self.N)
                                              or not np.all(self._weight_init >= 0)
                                              or not self._weight_init.max() > 0):
            raise ConfigError(f"overlap weight must be a non-negative, non-zero ({N}, {N}) array, "
                              f"got shape {self._weight_init.shape}, minimum "
                              f"{float(self._weight_init.min()) if self._weight_init.size else None}")

    def build(self, input_shape):
        if self.weighted:
            w = self._weight_init if self._weight_init is not None else np.ones((self.N, self.N))
            self.member_weight = self.add_weight(
                name="member_weight", shape=(self.N, self.N), trainable=False,
                initializer=keras.initializers.Constant(np.asarray(w, np.float32)))

    def call(self, inputs):
        re, im, offsets = inputs
        w = self.member_weight if self.weighted else None
        return overlap_average(re, im, offsets, self.N, self.eps, w, self.align_phases)

    def compute_output_shape(self, input_shape):
        return [input_shape[0], input_shape[0]]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(N=self.N, eps=self.eps, weighted=self.weighted, align_phases=self.align_phases)
        return cfg


@keras.saving.register_keras_serializable(package="ptycho")
class StackMembers(keras.layers.Layer):
    """An ensemble's patches side by side: inputs (re_0, im_0, re_1, im_1, ...), each (B, N, N, C),
    outputs (re, im) (B, N, N, C * k), member-major (member m's C patches in channels
    m C ... (m + 1) C - 1). The physics layer maps every channel on its own, and the loss compares
    each member's expected counts with the same counts (``poisson_nll``)."""

    def call(self, inputs):
        return [tf.concat(inputs[0::2], axis=-1), tf.concat(inputs[1::2], axis=-1)]

    def compute_output_shape(self, input_shape):
        s = input_shape[0]
        shape = (s[0], s[1], s[2], None if s[3] is None else s[3] * (len(input_shape) // 2))
        return [shape, shape]


def ensemble_size(model: keras.Model, C: int) -> int:
    """How many networks an arm's model holds: its object patches' channels per group member."""
    return int(model.get_layer("object_patches").output[0].shape[-1]) // int(C)


def member_weight(probe: np.ndarray) -> np.ndarray:
    """|P|^2 / max |P|^2 + ``MEMBER_WEIGHT_FLOOR``: the overlap constraint's per-pixel weight."""
    w = np.abs(np.asarray(probe, np.complex128)) ** 2
    return (w / w.max() + MEMBER_WEIGHT_FLOOR).astype(np.float32)


def build_pinn(N: int, gridsize: int, dose: float, probe: np.ndarray, norm: float,
               spec: BackboneSpec, amplitude_init: float = 0.5,
               align_phases: bool = False, train_probe: bool = False,
               probe_rate: float = 1.0) -> keras.Model:
    """The PINN training model: inputs ``counts`` (B, N, N, C) [and ``offsets`` (B, C, 2) for
    g >= 2] -> expected counts (B, N, N, C) photons at ``dose``; for an ensemble
    (``spec.ensemble`` = k > 1) (B, N, N, C k), the k members' side by side (``StackMembers``),
    all through the one physics layer.

    ``amplitude_init``: the amplitude the untrained network starts near (``mean_transmission``);
    ``align_phases`` (g = 2): the overlap constraint aligns the members' phase offsets first;
    ``train_probe``: the physics layer learns the probe from the nominal ``probe`` at
    ``probe_rate`` times the network's rate (``PoissonForward``).
    """
    if gridsize not in (1, 2):
        raise ConfigError(f"gridsize must be 1 or 2, got {gridsize}")
    spec.check(N)
    C = gridsize * gridsize
    counts = keras.Input((N, N, C), name="counts")
    inputs = [counts]
    x = CountsToAmplitude(norm, name="amplitude_input")(counts)
    # every pattern of a group goes through the same backbone (weights shared): the C
    # patterns are folded into the batch, and the C patches unfolded again for the constraint
    x = GroupToBatch(name="fold_group")(x)
    if gridsize > 1:
        offsets = keras.Input((C, 2), name="offsets")
        inputs.append(offsets)
    k = spec.ensemble
    members = []
    for m in range(k):  # an ensemble: k independent backbones, each with its own constraint
        p = member_prefix(m)
        amp, phase = amplitude_phase(x, spec, N, amplitude_init, prefix=p)
        amp = BatchToGroup(C, name=f"{p}unfold_amplitude")(amp)
        phase = BatchToGroup(C, name=f"{p}unfold_phase")(phase)
        last = "object_patches" if k == 1 else f"{p}member_patches"
        if gridsize == 1:
            re, im = AmpPhaseToComplex(name=last)([amp, phase])
        else:
            re, im = AmpPhaseToComplex(name=f"{p}raw_patches")([amp, phase])
            re, im = OverlapConstraint(N, weight=member_weight(probe), align_phases=align_phases,
                                       name=last)([re, im, offsets])
        members += [re, im]
    if k > 1:
        re, im = StackMembers(name="object_patches")(members)
    physics = (PoissonForward(N, dose, probe, train_probe=True, probe_rate=probe_rate,
                              name="physics") if train_probe
               else PoissonForward(N, dose, probe, name="physics"))
    lam = physics([re, im])
    return keras.Model(inputs, lam, name=f"pinn_g{gridsize}")


def mean_transmission(mean_counts_per_pattern: float, dose: float) -> float:
    """sqrt(mean photons per pattern / dose): the amplitude of the flat object that transmits the
    measured photons (a transparent object gives exactly ``dose`` photons per pattern)."""
    return float(np.sqrt(max(mean_counts_per_pattern, 0.0) / dose))


def learned_probe(model: keras.Model) -> np.ndarray | None:
    """The probe a PINN trained with ``train_probe`` ended with ((N, N) complex64, at the nominal
    probe's power), None when its probe was fixed (or the model has no physics layer)."""
    from ptycho.models.physics_layer import trained_probe

    try:
        layer = model.get_layer("physics")
    except ValueError:
        return None
    return trained_probe(layer)


def object_model(model: keras.Model) -> keras.Model:
    """The sub-model from a PINN's inputs to its object patches (real, imaginary)."""
    return keras.Model(model.inputs, model.get_layer("object_patches").output)
