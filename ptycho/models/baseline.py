"""Supervised baseline (PtychoNN-style): one pattern in, one object patch (amplitude, phase) out.

The same backbone as the PINN (``ptycho.models.backbones``, one ``BackboneSpec`` for both arms),
but trained with a mean absolute error against ground-truth patches cut from the object at the
train positions; there is no physics layer and no probe. Output ``amp_phase`` (B, N, N, 2):
channel 0 amplitude in (0, 1), channel 1 phase in radians in (-pi, pi).
"""

from __future__ import annotations

import keras

from ptycho.models.backbones import BackboneSpec, amplitude_phase, member_prefix
from ptycho.models.blocks import CountsToAmplitude


def build_baseline(N: int, norm: float, spec: BackboneSpec,
                   amplitude_init: float = 0.5) -> keras.Model:
    """Input ``counts`` (B, N, N, 1) -> ``amp_phase`` (B, N, N, 2); the amplitude head starts near
    ``amplitude_init``. An ensemble (``spec.ensemble`` = k > 1) outputs (B, N, N, 2 k): member m's
    amplitude and phase in channels 2 m and 2 m + 1."""
    spec.check(N)
    counts = keras.Input((N, N, 1), name="counts")
    x = CountsToAmplitude(norm, name="amplitude_input")(counts)
    heads = []
    for m in range(spec.ensemble):  # an ensemble: k independent backbones on the same input
        heads += amplitude_phase(x, spec, N, amplitude_init, prefix=member_prefix(m))
    out = keras.layers.Concatenate(axis=-1, name="amp_phase")(heads)
    return keras.Model(counts, out, name="baseline")


@keras.saving.register_keras_serializable(package="ptycho")
class SupportMAE(keras.losses.Loss):
    """Mean absolute error of amplitude and phase over the centred ``size`` x ``size`` square of
    the patch (the network's support; the whole patch when ``size`` = N).

    ``phase_offset_free``: score the phase modulo a constant per patch -- the phase error minus its
    mean over the support. A diffraction pattern is the same for O and O exp(i c), so one pattern
    does not determine its patch's phase offset; the stitching synchronises the offsets over the
    overlaps. With the absolute phase as target the network is asked for something its input does
    not hold, and learns an average offset instead of the phase's structure.

    Outside its support the network outputs a constant flat object, so errors there carry no
    gradient; leaving them out of the mean keeps the loss value a measure of what the network
    learns (with support 1/2, three quarters of a patch would otherwise be a constant floor)."""

    def __init__(self, N: int, size: int, phase_offset_free: bool = False,
                 name: str = "support_mae", **kwargs):
        super().__init__(name=name, **kwargs)
        self.N, self.size = int(N), int(size)
        self.phase_offset_free = bool(phase_offset_free)

    def call(self, y_true, y_pred):
        a = (self.N - self.size) // 2
        sl = slice(a, a + self.size)
        k = y_pred.shape[-1] // 2
        # an ensemble: every member against the same label, the mean over members (one network
        # keeps the computation below, so its losses stay bit for bit what they were)
        if k > 1:
            return self._ensemble(y_true[:, sl, sl, :], y_pred[:, sl, sl, :], k)
        diff = y_true[:, sl, sl, :] - y_pred[:, sl, sl, :]
        if self.phase_offset_free:
            ph = diff[..., 1:2]
            ph = ph - keras.ops.mean(ph, axis=(1, 2), keepdims=True)
            diff = keras.ops.concatenate([diff[..., 0:1], ph], axis=-1)
        err = keras.ops.abs(diff)
        return keras.ops.mean(keras.ops.reshape(err, (keras.ops.shape(err)[0], -1)), axis=-1)

    def _ensemble(self, y_true, y_pred, k: int):
        ops = keras.ops
        S = self.size
        diff = ops.reshape(y_pred, (-1, S, S, k, 2)) - ops.reshape(y_true, (-1, S, S, 1, 2))
        if self.phase_offset_free:
            ph = diff[..., 1:2]
            ph = ph - ops.mean(ph, axis=(1, 2), keepdims=True)
            diff = ops.concatenate([diff[..., 0:1], ph], axis=-1)
        err = ops.abs(diff)
        return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=-1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(N=self.N, size=self.size, phase_offset_free=self.phase_offset_free)
        return cfg
