"""Predicted patches kept on disk, stitched with per-patch phase synchronisation.

A single diffraction pattern does not fix the absolute phase of its exit wave (|FFT(e^{i a} psi)|^2
= |FFT(psi)|^2), so a network that predicts one patch per pattern returns every patch with its own
unknown phase offset; averaging such patches washes out the object's low spatial frequencies.
Overlapping patches do fix their *relative* offsets. ``PatchStore.synchronise`` finds unit phase
factors v_k that make the patches agree where they overlap, maximising

    sum_u |sum_k v_k w_k(u) O_k(u)|^2 / sum_k w_k(u)          (w_k = |P|^2 at patch k)

which is the same as minimising the probe-weighted disagreement sum_k sum_u w_k |v_k O_k - O|^2
with O the stitched object. This is angular synchronisation (Singer 2011): the leading eigenvector
of the degree-normalised Hermitian operator above followed by a few projected power iterations
v <- exp(i arg(M v)). ``method="global"`` finds the eigenvector with one matrix-free Lanczos solve
of the whole scan (``scipy.sparse.linalg.eigsh`` from a fixed start, so that runs are
reproducible); its iterations grow with the scan's extent (time about n^1.3). The default
``method="blocks"`` approximates it in time linear in n: local solves on overlapping spatial
blocks, blended and corrected by a two-level (partition-of-unity) scheme, see
``ptycho.reconstruct.sync``. Both use only the predictions, the known probe and the scan
positions: no ground truth. A global phase remains free; it is set so that the mean offset is
zero.

Memory: patches are written batch by batch to a temporary HDF5 file (shifted onto the integer
object grid once, with their weights) and every pass streams them back in batches, so memory is
one batch plus a few (H, W) canvases and a few numbers per patch, whatever the number of
patterns. The block solver first copies the windows into cell order (one more pass; the file
grows by the windows' size) so that a block is a contiguous read. The operator works on the
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
from scipy.sparse import coo_matrix

from ptycho.data.io import storage_error
from ptycho.errors import ConfigError, DatasetError
from ptycho.reconstruct.stitch import DEFAULT_THRESHOLD, StitchAccumulator, to_grid
from ptycho.reconstruct.sync import (
    BlockGrid,
    CoarseProblem,
    Tile,
    components,
    gather,
    inner,
    leading_phases,
    phase_of,
    power_refine,
    scatter_add,
)

SYNC_METHODS = ("blocks", "global")
DEFAULT_CELL_PATCHES = 64  # patches per cell of the block solver (a block: 2 x 2 cells)
SYNC_CYCLES = 3  # two-grid cycles of the block solver
SYNC_SMOOTHING = 2  # smoothing steps (streaming passes) per cycle

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
        # 1 where a patch's fractional position rounds up: its pixels sit one record pixel later
        self.lag = np.zeros((self.n, 2), np.int8)
        self.count = 0
        self._layout = None  # the block solver's piece order (``_sort_by_blocks``)
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
        frac = (np.asarray(positions, np.float64).reshape(-1, 2) - self.N / 2) - (corners + 1)
        self.lag[a:b] = frac >= 0.5
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

    def _check_complete(self) -> None:
        if self.count != self.n:
            raise DatasetError(f"stitching: {self.count} of {self.n} patches were added")

    def _batches(self, window: bool):
        """(first index, block corners on the object grid, patches, weights) per batch; with
        ``window`` the central windows, the patches already multiplied by their weights."""
        self._check_complete()
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

    def synchronise(self, refine_iterations: int = 10, method: str = "blocks",
                    cell_patches: int = DEFAULT_CELL_PATCHES,
                    lanczos_tol: float = 1e-4) -> tuple[np.ndarray, dict]:
        """Unit phase factors (n,) that make overlapping patches agree, and a summary dict.

        ``method``: "blocks" (default; time linear in n, ``ptycho.reconstruct.sync``) or "global"
        (one Lanczos solve of the whole operator, the solver before 2026-11; its time grows like
        n^1.3; ``lanczos_tol`` its relative tolerance, 1e-4 as before 2026-11). Both end with
        ``refine_iterations`` projected power iterations of the whole operator and fix the global
        phase so that the factors sum to a positive real.
        """
        if method == "global":
            v, info = self._synchronise_global(refine_iterations, float(lanczos_tol))
        elif method == "blocks":
            v, info = self._synchronise_blocks(refine_iterations, int(cell_patches))
        else:
            raise ConfigError(f"stitching: synchronisation method must be one of {SYNC_METHODS}, "
                              f"got '{method}'")
        info.update(solver=method, refine_iterations=int(refine_iterations), window=list(self.win),
                    offset_std_rad=float(np.std(np.angle(v))))
        return v, info

    def _synchronise_global(self, refine_iterations: int, tol: float) -> tuple[np.ndarray, dict]:
        matvec, degree = self._operator()
        v = power_refine(matvec, leading_phases(matvec, degree, tol), refine_iterations)
        v *= np.exp(-1j * np.angle(v.sum())) if abs(v.sum()) > 0 else 1.0
        consistency = float(np.real(np.vdot(v, matvec(v))))
        plain = float(np.real(np.vdot(np.ones(self.n), matvec(np.ones(self.n)))))
        return v, {"method": "angular synchronisation: Lanczos leading eigenvector of the "
                             "degree-normalised overlap operator + projected power iterations",
                   "objective": consistency, "objective_without": plain, "lanczos_tol": tol}

    # -- the block solver (ptycho.reconstruct.sync): cell-sorted copies of the windows
    def _sort_by_cells(self, cell_patches: int) -> None:
        """Lay a ``BlockGrid`` over the windows' centres and copy the weighted windows cell by cell
        (row by row of cells, scan order within a cell) into a contiguous dataset, in one
        streaming pass (a row of cells is then one contiguous read) that also sums, on the
        canvas, the weights (den), the weighted windows and their magnitudes."""
        if self._layout is not None and self._layout["cell_patches"] == cell_patches:
            return
        self._check_complete()
        L = self.win[1] - self.win[0]
        corners = self.corners + self.win[0] + 1  # window corners on the bordered canvas
        grid = BlockGrid.for_points(corners + L / 2, cell_patches)
        cell = grid.cell_of(corners + L / 2)
        order = np.argsort(cell, kind="stable")
        starts = np.searchsorted(cell[order], np.arange(grid.shape[0] * grid.shape[1] + 1))
        row_chunks = []  # row ranges within one row of cells: compact bounding boxes
        for y in range(grid.shape[0]):
            a, b = starts[y * grid.shape[1]], starts[(y + 1) * grid.shape[1]]
            row_chunks.append([(s, min(s + self.batch, b)) for s in range(a, b, self.batch)])
        if "sorted_window_weighted_patch" in self._f:
            del self._f["sorted_window_weighted_patch"]
        wp = self._f.create_dataset("sorted_window_weighted_patch", (self.n, L, L), np.complex64)
        sums = {"den": np.zeros(self._canvas_shape), "mag": np.zeros(self._canvas_shape),
                "plain": np.zeros(self._canvas_shape, np.complex128)}
        rank = np.empty(self.n, np.int64)
        rank[order] = np.arange(self.n)
        for a in range(0, self.n, self.batch):
            b = min(a + self.batch, self.n)
            dest = rank[a:b]
            src = np.argsort(dest)
            recs = self._wp_win[a:b][src]
            dest = dest[src]
            runs = np.split(np.arange(len(dest)), np.flatnonzero(np.diff(dest) != 1) + 1)
            for r in runs:  # consecutive destination rows: one write each
                wp[dest[r[0]] : dest[r[-1]] + 1] = recs[r]
            c, recs = corners[a:b][src], recs.astype(np.complex128)
            scatter_add(sums["den"], c, self._w_win[a:b][src].astype(np.float64))
            scatter_add(sums["plain"], c, recs)
            scatter_add(sums["mag"], c, np.abs(recs))
        self._layout = {"cell_patches": cell_patches, "grid": grid, "order": order,
                        "corners": corners[order], "cell_starts": starts,
                        "row_chunks": row_chunks, "chunks": [c for r in row_chunks for c in r],
                        "wp": wp, **sums}

    def _sorted_chunks(self):
        """(rows, canvas corners, weighted windows complex128) per chunk, in cell order."""
        lay = self._layout
        for a, b in lay["chunks"]:
            yield slice(a, b), lay["corners"][a:b], lay["wp"][a:b].astype(np.complex128)

    def _synchronise_blocks(self, refine_iterations: int, cell_patches: int):
        if cell_patches < 1:
            raise ConfigError(f"stitching: cell_patches must be >= 1, got {cell_patches}")
        self._sort_by_cells(cell_patches)
        lay = self._layout
        grid, corners, L = lay["grid"], lay["corners"], self.win[1] - self.win[0]
        den, plain = lay["den"], lay["plain"]  # plain = sum_k a_k: the objective without
        inv = np.zeros_like(den)
        ok = den > DEFAULT_THRESHOLD * self.weight.max()
        inv[ok] = 1.0 / den[ok]
        mag = lay["mag"] * inv  # sum_k |a_k| / den: the degrees
        vid, phi = grid.hats(corners + L / 2)
        v, degree = self._local_start(vid, phi, inv, mag, refine_iterations)
        # two-grid cycles towards the leading eigenvector of D^-1/2 M D^-1/2 (what the global
        # solve starts from): smoothing steps v <- D^-1 M v, then the coarse correction
        for _ in range(SYNC_CYCLES):
            canvas = self._sum_canvas(v)
            for _ in range(SYNC_SMOOTHING):
                v, canvas = self._power_pass(v, canvas, inv, degree)
            v = v * self._coarse_correction(v, degree, vid, phi, inv)
        v = phase_of(v)
        # 4. projected power iterations of the whole operator, one streaming pass each
        canvas = self._sum_canvas(v)
        for _ in range(int(refine_iterations)):
            v, canvas = self._power_pass(v, canvas, inv)
        v *= np.exp(-1j * np.angle(v.sum())) if abs(v.sum()) > 0 else 1.0
        factors = np.empty(self.n, np.complex128)
        factors[lay["order"]] = v
        info = {"method": "angular synchronisation on overlapping blocks: Lanczos leading "
                          "eigenvector per block, blended by a coarse Rayleigh-Ritz problem on "
                          "bilinear hat functions, two-grid cycles towards the leading "
                          "eigenvector of the whole overlap operator, then projected power "
                          "iterations",
                "objective": float(np.sum(np.abs(canvas) ** 2 * inv)),
                "objective_without": float(np.sum(np.abs(plain) ** 2 * inv)),
                "cell_patches": int(cell_patches), "cells": list(grid.shape),
                "cycles": SYNC_CYCLES, "smoothing_steps": SYNC_SMOOTHING}
        return factors, info

    def _local_start(self, vid, phi, inv, mag, refine_iterations: int):
        """Steps 2-3 of ``ptycho.reconstruct.sync``: every vertex's support on its own, blended
        by the coarse problem; returns (v (n,) complex, the degrees d (n,)), cell order."""
        lay = self._layout
        grid, corners, L = lay["grid"], lay["corners"], self.win[1] - self.win[0]
        local = np.zeros(vid.shape, np.complex64)  # w_j(k) for each patch's four vertices
        fid = np.full(vid.shape, -1, np.int64)  # the coarse function of each of them
        degree = np.zeros(self.n)
        coarse = CoarseProblem(grid, inv, reach=1 + math.ceil(L / grid.side))
        starts = lay["cell_starts"]
        for j in range(int(vid.max()) + 1):
            ranges = [(starts[c0], starts[c1 + 1]) for c0, c1 in grid.vertex_cells(j)]
            rows = np.concatenate([np.arange(a, b) for a, b in ranges] or [np.zeros(0, int)])
            slot = np.argmax(vid[rows] == j, axis=1)
            keep = phi[rows, slot] > 0
            if not keep.any():
                continue
            recs = np.concatenate([lay["wp"][a:b] for a, b in ranges]).astype(np.complex128)
            rows, slot, recs = rows[keep], slot[keep], recs[keep]
            degree[rows] = inner(np.abs(recs), gather(mag, corners[rows], L)).real
            labels = components(corners[rows], L)
            for lab in range(labels.max() + 1):
                sel = labels == lab
                r, sl, a = rows[sel], slot[sel], recs[sel]
                tile = Tile(corners[r], a, inv)
                w_loc = tile.solve(refine_iterations)
                hat = phi[r, sl]
                f = coarse.add(j, tile.box(), tile.sum(hat * w_loc),
                               float(np.sum(hat * degree[r])))
                local[r, sl], fid[r, sl] = w_loc, f
        c = coarse.solve()
        v = np.sum(np.where(fid >= 0, phi * local * c[np.maximum(fid, 0)], 0), axis=1)
        return v, degree

    def _sum_canvas(self, v: np.ndarray) -> np.ndarray:
        """sum_k v_k a_k on the canvas (one streaming pass)."""
        canvas = np.zeros(self._canvas_shape, np.complex128)
        for rows, c, wp in self._sorted_chunks():
            scatter_add(canvas, c, v[rows, None, None] * wp)
        return canvas

    def _power_pass(self, v, canvas, inv, degree=None):
        """One streaming pass: M v from ``canvas`` (= sum_k v_k a_k), then v <- D^-1 M v (with
        ``degree``) or v <- exp(i arg(M v)) (without), and the new v's canvas."""
        obj = canvas * inv
        new = np.zeros_like(canvas)
        v = v.copy()
        L = self.win[1] - self.win[0]
        for rows, c, wp in self._sorted_chunks():
            mv = inner(wp, gather(obj, c, L))
            if degree is None:
                v[rows] = phase_of(mv, v[rows])
            else:
                d = degree[rows]
                v[rows] = np.where(d > 0, mv / np.where(d > 0, d, 1.0), v[rows])
            scatter_add(new, c, v[rows, None, None] * wp)
        return v, new

    def _coarse_correction(self, v, degree, vid, phi, inv) -> np.ndarray:
        """The smooth factor (n,) sum_j phi_j c_j whose c maximises the Rayleigh quotient of M over
        D (lumped) on the space {phi_j v}: one streaming pass, cell row by cell row, keeping the
        sums G_j = sum_k phi_j(k) v_k a_k of two rows of vertices."""
        lay = self._layout
        grid, corners, L = lay["grid"], lay["corners"], self.win[1] - self.win[0]
        nx = grid.shape[1] + 1
        nv = (grid.shape[0] + 1) * nx
        lo = np.full((nv, 2), np.iinfo(np.int64).max)
        hi = np.full((nv, 2), np.iinfo(np.int64).min)
        dc = np.zeros(nv)
        for s in range(4):
            on = phi[:, s] > 0
            np.minimum.at(lo, vid[on, s], corners[on])
            np.maximum.at(hi, vid[on, s], corners[on] + L)
            dc += np.bincount(vid[:, s], phi[:, s] * np.abs(v) ** 2 * degree, minlength=nv)
        coarse = CoarseProblem(grid, inv, reach=1 + math.ceil(L / grid.side))
        fid = np.full(nv, -1, np.int64)
        sums: dict[int, np.ndarray] = {}

        def finish(vertex_row: int) -> None:
            for j in range(vertex_row * nx, (vertex_row + 1) * nx):
                if j in sums:
                    box = (*lo[j], *hi[j])
                    fid[j] = coarse.add(j, tuple(int(x) for x in box), sums.pop(j), dc[j])

        for row, chunks in enumerate(lay["row_chunks"]):
            for a, b in chunks:
                wp = v[a:b, None, None] * lay["wp"][a:b].astype(np.complex128)
                c, vv, ph = corners[a:b], vid[a:b], phi[a:b]
                for s in range(4):
                    for j in np.unique(vv[:, s]):
                        sel = (vv[:, s] == j) & (ph[:, s] > 0)
                        if sel.any():
                            if j not in sums:
                                sums[j] = np.zeros(hi[j] - lo[j], np.complex128)
                            scatter_add(sums[j], c[sel] - lo[j], ph[sel, s, None, None] * wp[sel])
            finish(row)
        finish(grid.shape[0])
        # the consistent mass Psi^H D Psi, B_ij = sum_k phi_i phi_j |v_k|^2 d_k: one 4 x 4 block
        # per cell (the lumped diagonal converged ~5x slower, measured)
        w = np.abs(v) ** 2 * degree
        starts = lay["cell_starts"]
        filled = np.flatnonzero(np.diff(starts) > 0)
        corner = fid[grid.cell_vertices()[filled]]
        rows, cols, vals = [], [], []
        for s in range(4):
            for t in range(4):
                block = np.add.reduceat(phi[:, s] * phi[:, t] * w, starts[filled])
                rows.append(corner[:, s])
                cols.append(corner[:, t])
                vals.append(block)
        nf = int(fid.max()) + 1
        mass = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(nf, nf)).tocsr()
        cvec = coarse.solve(mass)
        f = fid[vid]
        return np.sum(np.where(f >= 0, phi * cvec[np.maximum(f, 0)], 0), axis=1)

    # -- the error every patch shares
    def shared_error(self, factors: np.ndarray | None = None, iterations: int = 10,
                     threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, dict]:
        """The amplitude error e (N, N) that every patch shares at the same patch pixel, estimated
        from the patches' disagreement (no ground truth), and a summary dict.

        A network that turns one pattern into one patch can be wrong in the same way for every
        pattern (say, too bright at the probe's centre and too dark at its edge); stitching then
        repeats that error at every scan position, a lattice with the scan's period. Where patches
        overlap, one object pixel sits at different patch pixels in different patches, so the
        shared error shows as disagreement: the probe-weighted mean over all patches of (patch
        amplitude - stitched amplitude) at a patch pixel is e minus its overlap average. Each
        iteration adds that mean to e, takes e off every patch's amplitude (the phase kept) and
        stitches again (two streaming passes). The |P|^2-weighted mean of e is held at 0, so the
        patches' overall brightness stays the network's. Patches sit at fractional positions, so a
        patch pixel is matched to the object-grid pixel nearest it (within half a pixel). The
        object's own structure averages out over the scan positions, so e is what the patches
        share. ``stitch(factors, shared_error=e)`` applies it.
        """
        if iterations < 0:
            raise ConfigError(f"stitching: shared_error_iterations must be >= 0, got {iterations}")
        N, M = self.N, self.M
        w = self.weight
        e = np.zeros((N, N))
        steps = []
        for _ in range(int(iterations)):
            canvas = np.pad(self.stitch(factors, threshold, shared_error=e)[0], 1).ravel()
            num, den = np.zeros((M + 1, M + 1)), np.zeros((M + 1, M + 1))
            for a, c, p, wr in self._batches(False):
                q = np.abs(self._corrected(a, p, factors, e))
                r = wr * (q - np.abs(canvas[self._flat_index(c, M)]))
                for sel, ys, xs in self._lag_groups(a, len(c)):
                    num[ys, xs] += np.sum(r[sel], axis=0)
                    den[ys, xs] += np.sum(wr[sel], axis=0)
            num, den = num[2 : N + 2, 2 : N + 2], den[2 : N + 2, 2 : N + 2]  # patch pixels
            ok = den > threshold * den.max()
            step = np.zeros((N, N))
            step[ok] = num[ok] / den[ok]
            e += step
            e -= np.sum(w * e) / np.sum(w)
            steps.append(float(np.sqrt(np.sum(w * step**2) / np.sum(w))))
        return e, {"iterations": int(iterations),
                   "rms": float(np.sqrt(np.sum(w * e**2) / np.sum(w))),
                   "max_abs": float(np.max(np.abs(e[w >= 0.1 * w.max()]))),
                   "last_step_rms": steps[-1] if steps else 0.0}

    def _lag_groups(self, a: int, b: int):
        """(selection, rows, columns) per sub-pixel lag of records a ... a + b: record pixel r of
        a record whose position's fractional part rounds up (lag 1) holds patch pixel r - 2
        (r - 1 otherwise); rows/columns index an (N + 3, N + 3) array by patch pixel + 2."""
        lag = self.lag[a : a + b]
        M = self.M
        for ly in (0, 1):
            for lx in (0, 1):
                sel = (lag[:, 0] == ly) & (lag[:, 1] == lx)
                if sel.any():
                    yield sel, slice(1 - ly, 1 - ly + M), slice(1 - lx, 1 - lx + M)

    def _corrected(self, a: int, p: np.ndarray, factors, shared_error) -> np.ndarray:
        """Records a ... a + len(p): multiplied by their factors, the (N, N) ``shared_error``
        taken off their amplitudes at the matching patch pixels (clipped at 0; the phase kept)."""
        if factors is not None:
            p = np.asarray(factors)[a : a + len(p), None, None] * p
        if shared_error is None:
            return p
        N = self.N
        padded = np.zeros((N + 3, N + 3))
        padded[2 : N + 2, 2 : N + 2] = shared_error
        e = np.empty(p.shape)
        for sel, ys, xs in self._lag_groups(a, len(p)):
            e[sel] = padded[ys, xs]
        amp = np.abs(p)
        return p * (np.maximum(amp - e, 0.0) / np.maximum(amp, 1e-12))

    # -- the result
    def stitch(self, factors: np.ndarray | None = None,
               threshold: float = DEFAULT_THRESHOLD,
               shared_error: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(object (H, W) complex128, weight (H, W) float64) as ``StitchAccumulator.result``, each
        patch multiplied by its factor (1 when ``factors`` is None) and ``shared_error`` (N, N)
        (``shared_error``'s estimate) taken off its amplitude when given."""
        acc = StitchAccumulator(self.probe, self.shape)
        for a, c, p, w in self._batches(False):
            acc.add_on_grid(c, self._corrected(a, p, factors, shared_error), w)
        return acc.result(threshold)
