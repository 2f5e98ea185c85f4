"""A complete ptycho-dose arm: plain ePIE (Maiden & Rodenburg 2009) in NumPy.

It reads the test split only (counts, positions, probe; never the ground truth), updates the
object patch by patch with the known probe, and returns the object on the split's grid. Install
with ``pip install -e examples/ptycho_dose_epie`` and name it in a study::

    variants:
      epie_numpy: {arm: epie_numpy, settings: {iterations: 20}}
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from ptycho.arms.base import Arm


class EPIE(Arm):
    reads = ("test",)
    settings_schema: ClassVar[dict] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "iterations": {"type": "integer", "minimum": 1, "default": 20},
            "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 2, "default": 1.0},
            "seed": {"type": "integer", "default": 0},
        },
    }

    def reconstruct(self, test_path, *, model_dir=None, start_path=None):
        t0 = time.perf_counter()
        with self.open_test(test_path) as ds:
            probe = ds.probe.astype(np.complex128)
            pos, shape, dose = ds.positions, tuple(ds.object_shape), ds.dose
            counts = np.concatenate([c for _, c in ds.iter_batches(1024)])
        N = probe.shape[0]
        # measured moduli in the units of the orthonormal FFT of P * O (the forward model is
        # counts = dose |FFT_ortho(P O)|^2 / sum |P|^2, zero frequency at (N/2, N/2))
        scale = dose / np.sum(np.abs(probe) ** 2)
        moduli = np.fft.ifftshift(np.sqrt(counts / scale), axes=(-2, -1))
        corners = np.rint(pos - N / 2).astype(int)  # nearest-pixel patch corners
        corners = np.clip(corners, 0, np.array(shape) - N)
        obj = np.ones(shape, np.complex128)
        alpha = float(self.settings["alpha"])
        rng = np.random.default_rng(int(self.settings["seed"]))
        step = alpha * probe.conj() / np.max(np.abs(probe) ** 2)
        for _ in range(int(self.settings["iterations"])):
            for k in rng.permutation(len(pos)):
                y, x = corners[k]
                patch = obj[y:y + N, x:x + N]
                psi = probe * patch
                far = np.fft.fft2(psi, norm="ortho")
                far = moduli[k] * np.exp(1j * np.angle(far))
                patch += step * (np.fft.ifft2(far, norm="ortho") - psi)
        weight = np.zeros(shape)
        for y, x in corners:
            weight[y:y + N, x:x + N] += np.abs(probe) ** 2
        obj[weight <= 0] = 0
        return self.result(test_path, obj.astype(np.complex64), weight=weight,
                           wall_time_s=time.perf_counter() - t0,
                           info={"iterations": int(self.settings["iterations"]), "alpha": alpha})
