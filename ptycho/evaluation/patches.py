"""Where in its patch a network's amplitude is wrong: error profiles of predicted object patches.

A network arm predicts one object patch per diffraction pattern; stitching then averages the
patches with probe-intensity weights. When every patch carries the same error at the same place
(say, too bright where the probe is brightest), stitching repeats it at every scan position. This
module measures that, against the ground truth cut at the same positions the forward model cut it
(``ptycho.physics.forward.extract_patches``):

- ``bias`` (N, N): mean predicted minus true amplitude at each patch pixel (the error every patch
  shares), ``rmse`` (N, N) the root-mean-square amplitude error, ``true_std`` (N, N) the spread of
  the true amplitude at that pixel over the patches (an ``rmse`` near it: the pixel is not
  predicted better than by a constant);
- per ring of ``ring_px`` pixels around the patch centre: the probe intensity |P|^2 / max and
  the means of the three maps;
- ``gain``: per patch, the |P|^2-weighted mean predicted amplitude over the true one (mean and
  standard deviation over the patches): a pattern's total counts fix this weighted mean, so a gain
  near 1 with a large ``rmse`` says the shape within the patch is wrong, not its brightness.

Only amplitudes are compared: a single pattern does not fix its patch's phase offset. Patches are
accumulated batch by batch (``PatchErrorProfile.add``), so memory is a few (N, N) sums.
"""

from __future__ import annotations

import numpy as np

from ptycho.errors import PtychoError
from ptycho.physics.forward import extract_patches


class PatchErrorProfile:
    """Accumulates predicted amplitude patches against the truth's at the same positions."""

    def __init__(self, truth_object: np.ndarray, probe: np.ndarray):
        self.truth = np.asarray(truth_object)
        self.probe = np.asarray(probe)
        if self.truth.ndim != 2:
            raise PtychoError(f"patch error profile: the true object must be 2-D, got shape "
                              f"{self.truth.shape}")
        N = self.probe.shape[0]
        if self.probe.shape != (N, N) or not np.abs(self.probe).max() > 0:
            raise PtychoError(f"patch error profile: the probe must be a non-zero square array, "
                              f"got shape {self.probe.shape}")
        self.N = N
        w = np.abs(self.probe.astype(np.complex128)) ** 2
        self.weight = w / w.max()
        self.n = 0
        self._sum_d = np.zeros((N, N))
        self._sum_d2 = np.zeros((N, N))
        self._sum_t = np.zeros((N, N))
        self._sum_t2 = np.zeros((N, N))
        self._gains: list[np.ndarray] = []

    def add(self, patches: np.ndarray, positions: np.ndarray) -> None:
        """Add predicted patches (n, N, N) (complex or amplitude) at centre positions (n, 2)."""
        patches = np.asarray(patches)
        pos = np.asarray(positions, dtype=np.float64)
        if patches.ndim != 3 or patches.shape[1:] != (self.N, self.N) or pos.shape != (
                len(patches), 2):
            raise PtychoError(f"patch error profile: patches {patches.shape} and positions "
                              f"{pos.shape} do not match (n, {self.N}, {self.N}) and (n, 2)")
        pred = np.abs(patches).astype(np.float64)
        true = np.abs(extract_patches(self.truth, pos, self.N)).astype(np.float64)
        d = pred - true
        self._sum_d += d.sum(0)
        self._sum_d2 += (d * d).sum(0)
        self._sum_t += true.sum(0)
        self._sum_t2 += (true * true).sum(0)
        w = self.weight[None]
        self._gains.append((pred * w).sum((1, 2)) / np.maximum((true * w).sum((1, 2)), 1e-30))
        self.n += len(pred)

    def result(self, ring_px: int = 3) -> dict:
        """The maps (``bias``, ``rmse``, ``true_std``: (N, N) arrays), the ring table
        (``rings``: one dict per ring from the centre outwards) and the patch ``gain``."""
        if self.n == 0:
            raise PtychoError("patch error profile: no patches were added")
        if ring_px < 1:
            raise PtychoError(f"patch error profile: ring_px must be >= 1, got {ring_px}")
        n = self.n
        bias = self._sum_d / n
        rmse = np.sqrt(self._sum_d2 / n)
        mean_t = self._sum_t / n
        true_std = np.sqrt(np.maximum(self._sum_t2 / n - mean_t**2, 0.0))
        N = self.N
        c = np.arange(N) - N / 2 + 0.5
        r = np.hypot(c[:, None], c[None, :])
        rings = []
        for r0 in range(0, int(np.ceil(r.max())), ring_px):
            m = (r >= r0) & (r < r0 + ring_px)
            if m.any():
                rings.append({"r_px": [r0, r0 + ring_px], "probe_intensity": float(self.weight[m].mean()),
                              "bias": float(bias[m].mean()), "rmse": float(rmse[m].mean()),
                              "true_std": float(true_std[m].mean())})
        g = np.concatenate(self._gains)
        return {"n_patches": n, "bias": bias, "rmse": rmse, "true_std": true_std, "rings": rings,
                "gain": {"mean": float(g.mean()), "std": float(g.std())}}


__all__ = ["PatchErrorProfile"]
