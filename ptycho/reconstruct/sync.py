"""In-memory pieces of the per-patch phase synchronisation (``PatchStore.synchronise``).

The synchronisation maximises ``v^H M v`` over unit phase factors v (one per patch), with

    (M v)_k = sum_u conj(a_k(u)) sum_l v_l a_l(u) / den(u),    a_k = w_k O_k,  den = sum_k w_k

(``ptycho.reconstruct.patchstore`` explains why), starting from the leading eigenvector of the
degree-normalised D^-1/2 M D^-1/2. M couples only patches whose windows overlap, but one Lanczos
solve of the whole scan needs more iterations the wider the scan (its spectral gap shrinks like
1 / extent^2): the time grew like n^1.3-1.5. The block solver keeps every step linear in n with a
two-level (partition-of-unity) approximation of that eigenvector:

1. ``BlockGrid``: square cells of about ``cell_patches`` patches; every patch gets bilinear "hat"
   weights phi_j (summing to 1) on the four vertices of its cell.
2. Start: for each vertex j, the patches of its four cells (the support of phi_j, split into
   connected components, ``components``) are synchronised on their own: ``leading_vector`` of
   their rows and columns of M (``Tile``) and projected power iterations give local phases w_j:
   bounded problems, each patch in four of them. They are blended as
   ``v = sum_j phi_j w_j c_j``, c the leading vector of the coarse problem (``CoarseProblem``:
   M projected on the functions phi_j w_j, one unknown per vertex and component).
3. Two-grid cycles towards the leading eigenvector of M v = lambda D v (the global solve's
   start): a few smoothing steps v <- D^-1 M v (streamed passes), then the coarse correction
   v <- v sum_j phi_j c_j, c the leading generalised eigenvector of the Rayleigh-Ritz problem on
   the space {phi_j v}: A = Psi^H M Psi (sums over the supports' overlaps) and the consistent
   mass Psi^H D Psi (one 4 x 4 block per cell). Its size is the number of vertices, n / 64 by
   default. Three cycles put the result within 0.001 phase SSIM of the global solve on the
   scaled study's worst cells (``benchmarks/bench_sync_agreement.py``).
4. Projected power iterations of the whole M (streamed), as after the global solve.

For consistent patches (cut from one object) every step is exact: M is then a phase-conjugated
non-negative matrix whose Perron vector carries the true phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DENSE_MAX = 32  # pieces and coarse problems this small are diagonalised exactly
LOCAL_TOL = 1e-8  # Lanczos tolerance of a piece (small problems: cheap to solve exactly)


def phase_of(x: np.ndarray, fallback: np.ndarray | complex = 1.0) -> np.ndarray:
    """Unit factors exp(i arg x); ``fallback`` where x is 0."""
    return np.where(np.abs(x) > 0, np.exp(1j * np.angle(x)), fallback)


def leading_vector(apply, degree: np.ndarray, tol: float = 1e-4, dense_max: int = 0) -> np.ndarray:
    """Leading eigenvector x of D^-1/2 M D^-1/2 (D = diag(degree)) mapped back, D^-1/2 x, (n,).

    ``apply`` maps a vector (n,) to M v. Without the normalisation the eigenvector concentrates on
    the best-covered patches and its phases elsewhere are numerical noise. Lanczos
    (``scipy.sparse.linalg.eigsh``) from the fixed start sqrt(degree), so runs are reproducible;
    fewer than 3 connected unknowns give ones; up to ``dense_max`` unknowns the matrix is assembled
    (n products) and diagonalised exactly instead.
    """
    import scipy.sparse.linalg as sla

    n = len(degree)
    connected = degree > 1e-12 * degree.max() if n else np.zeros(0, bool)
    if n < 3 or connected.sum() < 3:
        return np.ones(n, np.complex128)
    scale = np.where(connected, 1.0 / np.sqrt(np.where(connected, degree, 1.0)), 0.0)
    if n <= dense_max:  # small problems: the exact eigenvector from the assembled matrix
        m = np.stack([scale * apply(scale * e) for e in np.eye(n, dtype=np.complex128)], axis=1)
        vec = np.linalg.eigh((m + m.conj().T) / 2)[1][:, -1:]
    else:
        op = sla.LinearOperator((n, n), dtype=np.complex128,
                                matvec=lambda u: scale * apply(scale * np.ravel(u)))
        _, vec = sla.eigsh(op, k=1, which="LA", v0=np.sqrt(np.maximum(degree, 0)) + 0j, tol=tol,
                           maxiter=100 * n)
    return vec[:, 0] * scale


def leading_phases(apply, degree: np.ndarray, tol: float = 1e-4, dense_max: int = 0) -> np.ndarray:
    """Unit factors (n,): the phases of ``leading_vector``."""
    return phase_of(leading_vector(apply, degree, tol, dense_max))


def power_refine(apply, v: np.ndarray, iterations: int) -> np.ndarray:
    """Projected power iterations v <- exp(i arg(M v)) (a factor stays where (M v)_k = 0)."""
    for _ in range(int(iterations)):
        v = phase_of(apply(v), v)
    return v


def scatter_add(canvas: np.ndarray, corners: np.ndarray, values: np.ndarray) -> None:
    """canvas[c + i, c' + j] += values[k, i, j] for the square blocks at ``corners`` (indices into
    ``canvas``). A loop of slice additions: measured 2.8x faster than one ``np.bincount`` over
    the blocks' bounding box for 256 blocks of 20 x 20, and its cost is that of the values."""
    L = values.shape[-1]
    for (y, x), v in zip(corners.tolist(), values):
        canvas[y : y + L, x : x + L] += v


def gather(canvas: np.ndarray, corners: np.ndarray, L: int) -> np.ndarray:
    """(b, L, L) copies of the blocks of ``canvas`` at ``corners`` (indices into ``canvas``)."""
    return np.lib.stride_tricks.sliding_window_view(canvas, (L, L))[corners[:, 0], corners[:, 1]]


def inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_ij conj(a[k, i, j]) b[k, i, j] per block k."""
    return np.einsum("kij,kij->k", np.conj(a), b)


@dataclass(frozen=True)
class BlockGrid:
    """Square cells of side ``side`` px from ``origin`` (y, x), ``shape`` (cells along y, x), and
    their (shape[0] + 1) x (shape[1] + 1) vertices, numbered row by row."""

    origin: tuple[float, float]
    side: float
    shape: tuple[int, int]

    @classmethod
    def for_points(cls, points: np.ndarray, cell_points: int) -> BlockGrid:
        """Cells holding about ``cell_points`` of ``points`` (n, 2) on average over their extent."""
        lo = points.min(axis=0)
        ext = np.ptp(points, axis=0) + 1.0
        side = max(1.0, math.sqrt(cell_points * ext[0] * ext[1] / len(points)))
        shape = np.maximum(1, np.ceil(ext / side)).astype(int)
        return cls((float(lo[0]), float(lo[1])), side, (int(shape[0]), int(shape[1])))

    def _local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = (points - np.asarray(self.origin)) / self.side
        cell = np.clip(np.floor(t).astype(np.int64), 0, np.asarray(self.shape) - 1)
        return cell, np.clip(t - cell, 0.0, 1.0)

    def cell_of(self, points: np.ndarray) -> np.ndarray:
        """Cell number (n,), row by row."""
        cell, _ = self._local(points)
        return cell[:, 0] * self.shape[1] + cell[:, 1]

    def hats(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vertex numbers (n, 4), bilinear weights (n, 4) summing to 1) of each point's cell."""
        cell, t = self._local(points)
        nx = self.shape[1] + 1
        vid, wts = [], []
        for dy in (0, 1):
            for dx in (0, 1):
                vid.append((cell[:, 0] + dy) * nx + cell[:, 1] + dx)
                wts.append(np.abs(1 - dy - t[:, 0]) * np.abs(1 - dx - t[:, 1]))
        return np.stack(vid, 1), np.stack(wts, 1)

    def cell_vertices(self) -> np.ndarray:
        """(cells, 4) vertex numbers of each cell's corners, in the order of ``hats``."""
        ny, nx = self.shape
        cy, cx = np.divmod(np.arange(ny * nx), nx)
        return np.stack([(cy + dy) * (nx + 1) + cx + dx for dy in (0, 1) for dx in (0, 1)], 1)

    def vertex_cells(self, vertex: int) -> list[tuple[int, int]]:
        """[first, last] cell numbers of each row of cells around ``vertex`` (the support of its
        hat function): up to two rows of up to two consecutive cells."""
        ny, nx = self.shape
        vy, vx = divmod(vertex, nx + 1)
        xs = [x for x in (vx - 1, vx) if 0 <= x < nx]
        return [(y * nx + xs[0], y * nx + xs[-1]) for y in (vy - 1, vy) if 0 <= y < ny and xs]


def components(corners: np.ndarray, L: int) -> np.ndarray:
    """Connected-component labels (m,) of L x L windows at ``corners``: two windows are linked
    when they share a pixel (Chebyshev distance of their corners below L)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    m = len(corners)
    if m < 2:
        return np.zeros(m, np.int64)
    pairs = cKDTree(corners).query_pairs(L - 0.5, p=np.inf, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    return connected_components(graph, directed=False)[1]


class Tile:
    """An (h, w) canvas of one piece at ``origin`` on a larger canvas: its operator M restricted
    to the piece and its synchronised sum S."""

    def __init__(self, corners: np.ndarray, a: np.ndarray, inv_den: np.ndarray):
        """``corners`` (m, 2) of the piece's windows ``a`` (m, L, L) and ``inv_den`` 1/den on the
        whole canvas (0 where den is below the threshold), both in canvas indices."""
        from scipy.sparse import csr_matrix

        m, L = len(a), a.shape[-1]
        self.origin = corners.min(axis=0)
        h, w = (corners - self.origin).max(axis=0) + L
        self.shape = (int(h), int(w))
        inv = inv_den[self.origin[0] : self.origin[0] + h, self.origin[1] : self.origin[1] + w]
        # A: (h w, m), column k = a_k on the tile; M_pp v = A^H (A v / den), never assembled
        # (the sparse product A^H A costs ~20 of its products)
        rows = gather(np.arange(h * w).reshape(h, w), corners - self.origin, L).ravel()
        cols = np.repeat(np.arange(m), L * L)
        self.A = csr_matrix((a.ravel(), (rows, cols)), shape=(h * w, m))
        self.AH = self.A.conj().T.tocsr()
        self.inv = inv.ravel()
        mag = csr_matrix((np.abs(a).ravel(), (rows, cols)), shape=(h * w, m))
        self.degree = mag.T @ (self.inv * (mag @ np.ones(m)))

    def apply(self, v: np.ndarray) -> np.ndarray:
        """M_pp v."""
        return self.AH @ (self.inv * (self.A @ v))

    def sum(self, v: np.ndarray) -> np.ndarray:
        """S = sum_k v_k a_k on the tile, (h, w)."""
        return (self.A @ v).reshape(self.shape)

    def solve(self, refine_iterations: int) -> np.ndarray:
        """Unit factors (m,) synchronising the piece on its own (``leading_phases`` + refinement)."""
        v = leading_phases(self.apply, self.degree, tol=LOCAL_TOL, dense_max=DENSE_MAX)
        return power_refine(self.apply, v, refine_iterations)

    def box(self) -> tuple[int, int, int, int]:
        y0, x0 = int(self.origin[0]), int(self.origin[1])
        return y0, x0, y0 + self.shape[0], x0 + self.shape[1]


class CoarseProblem:
    """The coarse problem of step 3, assembled as the coarse functions arrive vertex by vertex
    (row by row): ``A_fg = sum_u conj(G_f(u)) G_g(u) / den(u)`` with ``G_f = sum_k psi_f(k) a_k``
    on the function's tile. A function's tile reaches ``reach`` vertex steps, so it is compared
    only with the functions of those vertices, and tiles of rows that no later function reaches
    are dropped: memory is a few rows of tiles, not the whole scan."""

    def __init__(self, grid: BlockGrid, inv_den: np.ndarray, reach: int):
        self.nx = grid.shape[1] + 1
        self.inv = inv_den
        self.reach = int(reach)
        self.kept: dict[int, list[tuple[int, tuple[int, int, int, int], np.ndarray]]] = {}
        self.rows, self.cols, self.vals, self.degree = [], [], [], []

    def add(self, vertex: int, box: tuple[int, int, int, int], G: np.ndarray, degree: float) -> int:
        """Add a function (its tile ``box`` on the canvas, its sum ``G``, its lumped degree);
        returns its number."""
        f = len(self.degree)
        self.degree.append(float(degree))
        vy, vx = divmod(vertex, self.nx)
        for old in [v for v in self.kept if v // self.nx < vy - self.reach]:
            del self.kept[old]
        self.kept.setdefault(vertex, []).append((f, box, G))
        r = self.reach
        for dy in range(-r, 1):
            for dx in range(max(-r, -vx), min(r, self.nx - 1 - vx) + 1):  # no wrap to other rows
                for g, gbox, Gg in self.kept.get((vy + dy) * self.nx + vx + dx, []):
                    if g <= f:
                        self._couple(f, box, G, g, gbox, Gg)
        return f

    def _couple(self, f, fbox, Gf, g, gbox, Gg) -> None:
        y0, x0 = max(fbox[0], gbox[0]), max(fbox[1], gbox[1])
        y1, x1 = min(fbox[2], gbox[2]), min(fbox[3], gbox[3])
        if y0 >= y1 or x0 >= x1:
            return
        sf = Gf[y0 - fbox[0] : y1 - fbox[0], x0 - fbox[1] : x1 - fbox[1]]
        sg = Gg[y0 - gbox[0] : y1 - gbox[0], x0 - gbox[1] : x1 - gbox[1]]
        b = np.sum(np.conj(sf) * sg * self.inv[y0:y1, x0:x1], dtype=np.complex128)
        if f == g:
            self.rows.append(f), self.cols.append(f), self.vals.append(b.real)
        else:
            self.rows += [f, g]
            self.cols += [g, f]
            self.vals += [b, np.conj(b)]

    def solve(self, mass=None) -> np.ndarray:
        """c (n_functions,): the leading generalised eigenvector of (A, ``mass``) (sparse,
        Hermitian positive definite), or without ``mass`` the leading vector of A normalised by
        the lumped degrees (``leading_vector``)."""
        import scipy.linalg as la
        import scipy.sparse.linalg as sla
        from scipy.sparse import coo_matrix, diags

        n = len(self.degree)
        A = coo_matrix((np.asarray(self.vals, np.complex128), (self.rows, self.cols)),
                       shape=(n, n)).tocsr()
        if mass is None or n < 3:
            return leading_vector(A.dot, np.asarray(self.degree), tol=LOCAL_TOL,
                                  dense_max=DENSE_MAX)
        d = mass.diagonal()
        mass = mass + diags(np.where(d > 0, 0.0, 1.0))  # a function without weight: inert
        if n <= DENSE_MAX:
            return la.eigh(A.toarray(), mass.toarray(), subset_by_index=[n - 1, n - 1])[1][:, 0]
        _, vec = sla.eigsh(A, k=1, M=mass.tocsc(), which="LA", tol=LOCAL_TOL,
                           v0=np.sqrt(np.maximum(d, 0)) + 0j)
        return vec[:, 0]
