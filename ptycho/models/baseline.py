"""Supervised baseline (PtychoNN-style): one pattern in, one object patch (amplitude, phase) out.

The same backbone as the PINN (``ptycho.models.backbones``, one ``BackboneSpec`` for both arms),
but trained with a mean absolute error against ground-truth patches cut from the object at the
train positions; there is no physics layer and no probe. Output ``amp_phase`` (B, N, N, 2):
channel 0 amplitude in (0, 1), channel 1 phase in radians in (-pi, pi).
"""

from __future__ import annotations

import keras

from ptycho.models.backbones import BackboneSpec, amplitude_phase
from ptycho.models.blocks import CountsToAmplitude


def build_baseline(N: int, norm: float, spec: BackboneSpec,
                   amplitude_init: float = 0.5) -> keras.Model:
    """Input ``counts`` (B, N, N, 1) -> ``amp_phase`` (B, N, N, 2); the amplitude head starts near
    ``amplitude_init``."""
    spec.check(N)
    counts = keras.Input((N, N, 1), name="counts")
    x = CountsToAmplitude(norm, name="amplitude_input")(counts)
    amp, phase = amplitude_phase(x, spec, N, amplitude_init)
    out = keras.layers.Concatenate(axis=-1, name="amp_phase")([amp, phase])
    return keras.Model(counts, out, name="baseline")
