"""Differentiable far-field forward model (TensorFlow), the same physics as ``ptycho.physics.forward``.

lambda = exp(s) * D * |fftshift(FFT_ortho(P * O_patch))|^2 / sum |P|^2

with D the dataset's dose (incident photons per exposure), P the known probe and s one learned
log-scale initialised at 0, so an untrained scale reproduces ``expected_counts`` exactly.

Tensors are channels-last: object patches (B, N, N, C) given as real and imaginary parts, expected
counts (B, N, N, C) float32 photons. The probe is stored as non-trainable weights (saved with the
model), so a reloaded model needs no probe file.

Trainable probe (``train_probe``): P = P_nom + r * max|P_nom| * dP, with dP a trainable pair of
weights initialised at 0 (so training starts at the nominal probe) and r the probe's rate relative
to the network's (Adam moves each weight by about the learning rate per step, so dP's steps move
the probe by r x learning rate of its peak amplitude). The forward divides by sum |P|^2, so the
probe's power never changes the counts: the probe-object scale ambiguity is fixed by the dose
(the probe is reported at the nominal probe's power, :func:`trained_probe`). A global phase factor
of the probe is not determined either and is left to the comparison (the relative probe error
minimises over a complex factor); a phase ramp of the probe can be traded against the opposite
ramp of the object patches and is not constrained. Without ``train_probe`` the layer, its weights
and its saved configuration are exactly those of a fixed probe.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ptycho.errors import DatasetError


def probe_norm(probe: np.ndarray) -> float:
    """sum |P|^2 of a probe (photons of a unit-dose exposure land on the detector)."""
    norm = float(np.sum(np.abs(np.asarray(probe)) ** 2))
    if not norm > 0:
        raise DatasetError("probe is zero everywhere")
    return norm


def far_field_intensity(re: tf.Tensor, im: tf.Tensor, probe_re: tf.Tensor,
                        probe_im: tf.Tensor) -> tf.Tensor:
    """|fftshift(FFT_ortho(P * O))|^2 for channels-last patches (B, N, N, C); probe (N, N)."""
    obj = tf.complex(re, im)
    probe = tf.complex(probe_re, probe_im)
    exit_wave = tf.transpose(obj, (0, 3, 1, 2)) * probe  # (B, C, N, N): fft2d acts on the last two
    n = tf.cast(tf.shape(exit_wave)[-1] * tf.shape(exit_wave)[-2], tf.float32)
    psi = tf.signal.fft2d(exit_wave) / tf.complex(tf.sqrt(n), 0.0)
    psi = tf.signal.fftshift(psi, axes=(-2, -1))
    intensity = tf.math.real(psi) ** 2 + tf.math.imag(psi) ** 2
    return tf.transpose(intensity, (0, 2, 3, 1))


def expected_counts_tf(patches: np.ndarray | tf.Tensor, probe: np.ndarray, dose: float,
                       log_scale: float = 0.0) -> tf.Tensor:
    """Functional form: expected counts (B, N, N) of complex patches (B, N, N) at ``dose``."""
    p = tf.convert_to_tensor(patches, dtype=tf.complex64)[..., None]
    probe = np.asarray(probe, dtype=np.complex64)
    inten = far_field_intensity(tf.math.real(p), tf.math.imag(p),
                                tf.constant(probe.real), tf.constant(probe.imag))
    scale = float(dose) / probe_norm(probe) * float(np.exp(log_scale))
    return inten[..., 0] * scale


@keras.saving.register_keras_serializable(package="ptycho")
class PoissonForward(keras.layers.Layer):
    """Object patches (re, im), each (B, N, N, C) -> expected counts (B, N, N, C) at ``dose``.

    Weights: ``probe_re``/``probe_im`` (non-trainable, the known probe) and ``log_scale``
    (trainable, one scalar, initialised at 0).
    """

    def __init__(self, N: int, dose: float, probe: np.ndarray | None = None,
                 train_probe: bool = False, probe_rate: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)
        self.dose = float(dose)
        self.train_probe = bool(train_probe)
        self.probe_rate = float(probe_rate)
        if self.train_probe and not self.probe_rate > 0:
            raise DatasetError(f"probe_rate must be > 0, got {probe_rate}")
        if not self.dose > 0:
            raise DatasetError(f"dose must be > 0 photons per exposure, got {dose}")
        self._probe_init = None if probe is None else np.asarray(probe, dtype=np.complex64)
        if self._probe_init is not None and self._probe_init.shape != (self.N, self.N):
            raise DatasetError(f"probe has shape {self._probe_init.shape}, expected ({N}, {N})")

    def build(self, input_shape):
        p = self._probe_init if self._probe_init is not None else np.ones((self.N, self.N), np.complex64)
        self.probe_re = self.add_weight(name="probe_re", shape=(self.N, self.N), trainable=False,
                                        initializer=keras.initializers.Constant(p.real))
        self.probe_im = self.add_weight(name="probe_im", shape=(self.N, self.N), trainable=False,
                                        initializer=keras.initializers.Constant(p.imag))
        self.log_scale = self.add_weight(name="log_scale", shape=(), trainable=True,
                                         initializer="zeros")
        if self.train_probe:
            self.probe_delta_re = self.add_weight(name="probe_delta_re", shape=(self.N, self.N),
                                                  trainable=True, initializer="zeros")
            self.probe_delta_im = self.add_weight(name="probe_delta_im", shape=(self.N, self.N),
                                                  trainable=True, initializer="zeros")

    def probe_parts(self):
        """(real, imaginary) of the probe the forward uses: the nominal one, or with
        ``train_probe`` the nominal one plus its learned change."""
        if not self.train_probe:
            return self.probe_re, self.probe_im
        peak = tf.sqrt(tf.reduce_max(self.probe_re**2 + self.probe_im**2))
        step = self.probe_rate * peak
        return (self.probe_re + step * self.probe_delta_re,
                self.probe_im + step * self.probe_delta_im)

    def call(self, inputs):
        re, im = inputs
        probe_re, probe_im = self.probe_parts()
        inten = far_field_intensity(re, im, probe_re, probe_im)
        norm = tf.reduce_sum(probe_re**2 + probe_im**2)
        return inten * (self.dose / norm) * tf.exp(self.log_scale)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(N=self.N, dose=self.dose)
        if self.train_probe:  # a fixed probe saves the configuration it always had
            cfg.update(train_probe=True, probe_rate=self.probe_rate)
        return cfg


def trained_probe(layer: PoissonForward) -> np.ndarray | None:
    """The probe a ``train_probe`` physics layer ended with, (N, N) complex64 at the nominal
    probe's power (the forward is blind to the probe's power); None for a fixed probe."""
    if not getattr(layer, "train_probe", False):
        return None
    re, im = (np.asarray(v, np.float64) for v in layer.probe_parts())
    nominal = np.asarray(layer.probe_re, np.float64) + 1j * np.asarray(layer.probe_im, np.float64)
    probe = re + 1j * im
    probe *= np.sqrt(probe_norm(nominal) / probe_norm(probe))
    return probe.astype(np.complex64)


@keras.saving.register_keras_serializable(package="ptycho")
class PoissonNLL(keras.losses.Loss):
    """Poisson negative log-likelihood of counts k under expected counts lambda, per pixel:

    lambda - k log(lambda + eps) - [k - k log(k + eps)]

    The bracket is a constant of the data (the NLL of the saturated model), so gradients are those
    of the NLL while the value is >= 0 (~0.5 per pixel at the noise level) and plots on a log axis.
    It is written as (lambda - k) - k (log(lambda + eps) - log(k + eps)) to keep float32 precision at
    high dose.
    """

    def __init__(self, eps: float = 1e-6, name: str = "poisson_nll", **kwargs):
        super().__init__(name=name, **kwargs)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        return poisson_nll(y_true, y_pred, self.eps)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(eps=self.eps)
        return cfg


def poisson_nll(counts, lam, eps: float = 1e-6) -> tf.Tensor:
    """Per-sample mean of the shifted Poisson NLL (see ``PoissonNLL``), shape (B,).

    ``lam`` may hold k times the channels of ``counts`` (an ensemble's members side by side,
    member-major): each member is compared with the same counts, and the value is the mean over
    the members."""
    k = tf.cast(counts, tf.float32)
    lam = tf.cast(lam, tf.float32)
    if lam.shape[-1] is not None and k.shape[-1] is not None and lam.shape[-1] != k.shape[-1]:
        k = tf.tile(k, [1] * (len(k.shape) - 1) + [lam.shape[-1] // k.shape[-1]])
    per_pixel = (lam - k) - k * (tf.math.log(lam + eps) - tf.math.log(k + eps))
    return tf.reduce_mean(tf.reshape(per_pixel, (tf.shape(per_pixel)[0], -1)), axis=-1)
