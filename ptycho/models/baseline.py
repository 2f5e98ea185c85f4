"""Supervised baseline (PtychoNN-style): one pattern in, one object patch (amplitude, phase) out.

Same encoder/decoder family as the PINN (``ptycho.models.blocks``), but trained with a mean
absolute error against ground-truth patches cut from the object at the train positions; there is
no physics layer and no probe. Output ``amp_phase`` (B, N, N, 2): channel 0 amplitude in (0, 1),
channel 1 phase in radians in (-pi, pi).
"""

from __future__ import annotations

import keras

from ptycho.models.blocks import CountsToAmplitude, amplitude_phase_heads, check_depth, encoder


def build_baseline(N: int, norm: float, filters: int, depth: int,
                   amplitude_init: float = 0.5) -> keras.Model:
    """Input ``counts`` (B, N, N, 1) -> ``amp_phase`` (B, N, N, 2); the amplitude head starts near
    ``amplitude_init``."""
    check_depth(N, depth)
    counts = keras.Input((N, N, 1), name="counts")
    x = CountsToAmplitude(norm, name="amplitude_input")(counts)
    h = encoder(x, filters, depth)
    amp, phase = amplitude_phase_heads(h, filters, depth, 1, amplitude_init)
    out = keras.layers.Concatenate(axis=-1, name="amp_phase")([amp, phase])
    return keras.Model(counts, out, name="baseline")
