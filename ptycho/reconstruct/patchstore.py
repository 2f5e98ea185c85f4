"""Predicted patches kept on disk, stitched with per-patch phase synchronisation.

A single diffraction pattern does not fix the absolute phase of its exit wave (|FFT(e^{i a} psi)|^2
= |FFT(psi)|^2), so a network that predicts one patch per pattern returns every patch with its own
unknown phase offset; averaging such patches washes out the object's low spatial frequencies.
Overlapping patches do fix their *relative* offsets. ``PatchStore.synchronise`` finds unit phase
factors v_k that make the patches agree where they overlap, maximising

    sum_u |sum_k v_k w_k(u) O_k(u)|^2 / sum_k w_k(u)          (w_k = |P|^2 at patch k)

which is the same as minimising the probe-weighted disagreement sum_k sum_u w_k |v_k O_k - O|^2
with O the stitched object. This is angular synchronisation (Singer 2011): the leading eigenvector
of the Hermitian operator above (matrix-free Lanczos, ``scipy.sparse.linalg.eigsh``, from a fixed
start vector so that runs are reproducible) followed by a few projected power iterations
v <- exp(i arg(M v)). It uses only the predictions, the known probe and the scan positions: no
ground truth. A global phase remains free; it is set so that the mean offset is zero.

Memory: patches are written batch by batch to a temporary HDF5 file (shifted onto the integer
object grid once, with their weights) and every pass streams them back in batches, so memory is
one batch plus a few (H, W) canvases, whatever the number of patterns. The operator works on the
central window of each patch where |P|^2 is at least ``sync_threshold`` of its peak; the final
stitch uses the whole patch.

The file lives in a ``ptycho-stitch-*`` directory of the temporary directory, removed when the
store closes. The store holds an flock on the directory's ``owner.lock`` while open, so a directory
left by a killed job (lock free) is told apart from one in use, and the next store or workflow run
removes it (``remove_stale_stores``).
"""

from __future__ import annotations

import fcntl
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ptycho.data.io import storage_error
from ptycho.errors import DatasetError
from ptycho.reconstruct.stitch import DEFAULT_THRESHOLD, StitchAccumulator, to_grid

log = logging.getLogger(__name__)

STORE_PREFIX = "ptycho-stitch-"
OWNER_LOCK = "owner.lock"
# A directory without a lock file: one being created (a moment), or left by a version of this
# package that did not lock its stores (which may still be running): removed only after a day.
UNLOCKED_GRACE_S = 86400.0


def remove_stale_stores(directory=None) -> list[Path]:
    """Remove ``ptycho-stitch-*`` directories in ``directory`` (the system temporary directory by
    default) that no live process holds: their ``owner.lock`` is free (the store's process ended
    without closing it, e.g. SIGKILL), or, without a lock file, older than a day. Returns them."""
    base = Path(directory or tempfile.gettempdir())
    removed = []
    for d in sorted(base.glob(f"{STORE_PREFIX}*")):
        if not d.is_dir() or d.is_symlink():
            continue
        lock = d / OWNER_LOCK
        try:
            if lock.is_file():
                with open(lock, "a") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError while it is held
                    shutil.rmtree(d)
            elif time.time() - d.stat().st_mtime > UNLOCKED_GRACE_S:
                shutil.rmtree(d)
            else:
                continue
        except OSError:
            continue
        removed.append(d)
    return removed


def sync_window(weight: np.ndarray, threshold: float) -> tuple[int, int]:
    """[start, stop) of the centred window (on the (N + 2)-wide grid records) that holds every
    probe pixel with |P|^2 >= threshold * peak, plus one pixel for the sub-pixel shift."""
    N = weight.shape[0]
    M = N + 2
    ys, xs = np.nonzero(weight >= threshold * weight.max())
    r = max(np.abs(ys + 1 - M / 2).max(), np.abs(xs + 1 - M / 2).max(), 1.0)
    half = min(math.ceil(r) + 2, M // 2)
    return M // 2 - half, M // 2 + half


class PatchStore:
    """Temporary on-disk store of patches on the object grid; use as a context manager.

    ``add`` patches in batches, then ``synchronise`` (optional) and ``stitch``.
    """

    def __init__(self, probe: np.ndarray, object_shape, n_patches: int, directory=None,
                 batch: int = 256, sync_threshold: float = 1e-2):
        probe = np.asarray(probe)
        if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
            raise DatasetError(f"probe must be square (N, N), got shape {probe.shape}")
        self.probe = probe
        self.weight = np.abs(probe.astype(np.complex128)) ** 2
        if not self.weight.max() > 0:
            raise DatasetError("probe is zero everywhere")
        self.N = probe.shape[0]
        self.M = self.N + 2
        self.shape = (int(object_shape[0]), int(object_shape[1]))
        self.n = int(n_patches)
        if self.n < 1:
            raise DatasetError("nothing to stitch: no patches")
        self.batch = int(batch)
        self.win = sync_window(self.weight, sync_threshold)
        self.corners = np.zeros((self.n, 2), np.int64)  # (n, 2) ints: small beside the patches
        self.count = 0
        for stale in remove_stale_stores(directory):
            log.info("removed the patch store of an interrupted job: %s", stale)
        self._tmp = tempfile.TemporaryDirectory(prefix=STORE_PREFIX, dir=directory)
        self._owner = open(Path(self._tmp.name) / OWNER_LOCK, "w")  # noqa: SIM115 - held
        fcntl.flock(self._owner, fcntl.LOCK_EX)
        self.path = Path(self._tmp.name) / "patches.h5"
        self._f = h5py.File(self.path, "w")
        rows = max(1, min(self.batch, self.n))
        M = self.M
        self._patch = self._f.create_dataset("patch", (self.n, M, M), np.complex64, chunks=(rows, M, M))
        self._w = self._f.create_dataset("weight", (self.n, M, M), np.float32, chunks=(rows, M, M))
        # the synchronisation passes read only the central windows: their own datasets, so a pass
        # reads whole chunks (a windowed hyperslab of the full records is ~100x slower in h5py)
        L = self.win[1] - self.win[0]
        self._wp_win = self._f.create_dataset("window_weighted_patch", (self.n, L, L), np.complex64,
                                              chunks=(rows, L, L))
        self._w_win = self._f.create_dataset("window_weight", (self.n, L, L), np.float32,
                                             chunks=(rows, L, L))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
                self._owner.close()
                self._tmp.cleanup()

    # -- filling
    def add(self, patches: np.ndarray, positions: np.ndarray) -> None:
        corners, shifted, weights = to_grid(patches, positions, self.weight)
        a, b = self.count, self.count + len(corners)
        if b > self.n:
            raise DatasetError(f"stitching: more patches than the {self.n} announced")
        H, W = self.shape
        lo, hi = corners.min(axis=0), corners.max(axis=0) + self.M
        if lo.min() < -1 or hi[0] > H + 1 or hi[1] > W + 1:
            raise DatasetError(f"stitching: a patch leaves the {H} x {W} object grid")
        self.corners[a:b] = corners
        s0, s1 = self.win
        win_w = weights[:, s0:s1, s0:s1]
        try:
            self._patch[a:b] = shifted.astype(np.complex64)
            self._w[a:b] = weights.astype(np.float32)
            self._wp_win[a:b] = (win_w * shifted[:, s0:s1, s0:s1]).astype(np.complex64)
            self._w_win[a:b] = win_w.astype(np.float32)
        except Exception as exc:
            err = storage_error(exc, f"{self.path} (the temporary patch store)")
            if err is None:
                raise
            raise err from exc
        self.count = b

    def _batches(self, window: bool):
        """(first index, block corners on the object grid, patches, weights) per batch; with
        ``window`` the central windows, the patches already multiplied by their weights."""
        if self.count != self.n:
            raise DatasetError(f"stitching: {self.count} of {self.n} patches were added")
        s0 = self.win[0] if window else 0
        pd, wd = (self._wp_win, self._w_win) if window else (self._patch, self._w)
        for a in range(0, self.n, self.batch):
            b = min(a + self.batch, self.n)
            yield a, self.corners[a:b] + s0, pd[a:b].astype(np.complex128), wd[a:b].astype(np.float64)

    @property
    def _canvas_shape(self) -> tuple[int, int]:
        return self.shape[0] + 2, self.shape[1] + 2  # one pixel of border: records start at -1

    def _flat_index(self, corners: np.ndarray, L: int) -> np.ndarray:
        """(b, L, L) indices into the raveled canvas of the L x L blocks at object-grid ``corners``
        (the canvas has a one-pixel border, so a record may start at -1)."""
        W2 = self._canvas_shape[1]
        r = np.arange(L)
        c = corners + 1
        return (c[:, 0, None, None] + r[None, :, None]) * W2 + c[:, 1, None, None] + r

    def _scatter(self, size: int, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        """sum of ``values`` at flat canvas indices ``idx`` (np.bincount, real and imaginary)."""
        out = np.bincount(idx.ravel(), weights=values.real.ravel(), minlength=size).astype(values.dtype)
        if np.iscomplexobj(values):
            out += 1j * np.bincount(idx.ravel(), weights=values.imag.ravel(), minlength=size)
        return out

    # -- the synchronisation operator
    def _operator(self):
        """(apply, degree): v -> (M v) on the windows, and the degrees d_k = sum_l |M|_kl (M
        built from the patch magnitudes), the row sums of M when all patches agree."""
        size = self._canvas_shape[0] * self._canvas_shape[1]
        den = np.zeros(size)
        for _, c, _, w in self._batches(True):
            den += self._scatter(size, self._flat_index(c, w.shape[-1]), w)
        # (window records hold w * p already)
        inv = np.zeros_like(den)
        ok = den > DEFAULT_THRESHOLD * self.weight.max()
        inv[ok] = 1.0 / den[ok]

        def apply(v, magnitude=False):
            v = np.asarray(v).reshape(-1)
            num = np.zeros(size, np.complex128)
            for a, c, wp, w in self._batches(True):
                wp = np.abs(wp) if magnitude else wp
                num += self._scatter(size, self._flat_index(c, w.shape[-1]),
                                     v[a : a + len(c), None, None] * wp)
            obj = num * inv
            out = np.empty(self.n, np.complex128)
            for a, c, wp, w in self._batches(True):
                wp = np.abs(wp) if magnitude else wp
                block = obj[self._flat_index(c, w.shape[-1])]
                out[a : a + len(c)] = np.sum(np.conj(wp) * block, axis=(1, 2))
            return out

        degree = apply(np.ones(self.n), magnitude=True).real
        return apply, degree

    def synchronise(self, refine_iterations: int = 10) -> tuple[np.ndarray, dict]:
        """Unit phase factors (n,) that make overlapping patches agree, and a summary dict."""
        import scipy.sparse.linalg as sla

        matvec, degree = self._operator()
        info = {"method": "angular synchronisation: Lanczos leading eigenvector of the "
                          "degree-normalised overlap operator + projected power iterations",
                "refine_iterations": int(refine_iterations), "window": list(self.win)}
        connected = degree > 1e-12 * degree.max()
        if self.n >= 3 and connected.sum() >= 3:
            # D^-1/2 M D^-1/2: without the normalisation the leading eigenvector concentrates on
            # the best-covered patches and its phases elsewhere are numerical noise
            scale = np.where(connected, 1.0 / np.sqrt(np.where(connected, degree, 1.0)), 0.0)
            op = sla.LinearOperator((self.n, self.n), dtype=np.complex128,
                                    matvec=lambda u: scale * matvec(scale * np.ravel(u)))
            _, vec = sla.eigsh(op, k=1, which="LA", v0=np.sqrt(np.maximum(degree, 0)) + 0j,
                               tol=1e-4, maxiter=100 * self.n)
            vec = vec[:, 0] * scale
            v = np.where(np.abs(vec) > 0, np.exp(1j * np.angle(vec)), 1.0)
        else:
            v = np.ones(self.n, np.complex128)
        for _ in range(int(refine_iterations)):
            mv = matvec(v)
            v = np.where(np.abs(mv) > 0, np.exp(1j * np.angle(mv)), v)
        v *= np.exp(-1j * np.angle(v.sum())) if abs(v.sum()) > 0 else 1.0
        consistency = float(np.real(np.vdot(v, matvec(v))))
        plain = float(np.real(np.vdot(np.ones(self.n), matvec(np.ones(self.n)))))
        info.update(objective=consistency, objective_without=plain,
                    offset_std_rad=float(np.std(np.angle(v))))
        return v, info

    # -- the result
    def stitch(self, factors: np.ndarray | None = None,
               threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
        """(object (H, W) complex128, weight (H, W) float64) as ``StitchAccumulator.result``, each
        patch multiplied by its factor (1 when ``factors`` is None)."""
        acc = StitchAccumulator(self.probe, self.shape)
        for a, c, p, w in self._batches(False):
            f = np.ones(len(c)) if factors is None else np.asarray(factors)[a : a + len(c)]
            acc.add_on_grid(c, f[:, None, None] * p, w)
        return acc.result(threshold)
