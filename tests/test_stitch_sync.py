"""Disk-backed stitching with per-patch phase synchronisation (ptycho.reconstruct.patchstore)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.errors import ConfigError, DatasetError
from ptycho.physics.forward import extract_patches
from ptycho.physics.probe import simulated_probe
from ptycho.reconstruct.patchstore import PatchStore
from ptycho.reconstruct.stitch import stitch_patches


def _object(shape, seed):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    amp = 0.6 + 0.3 * gaussian_filter(rng.uniform(-1, 1, shape), 2.0) / 0.2
    phase = 1.2 * gaussian_filter(rng.uniform(-1, 1, shape), 3.0) / 0.15
    return np.clip(amp, 0.2, 1.0) * np.exp(1j * np.clip(phase, -2.5, 2.5))


def _scan(step, lo, hi_y, hi_x, seed, jitter=0.3):
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(lo, hi_y, step), np.arange(lo, hi_x, step), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    return pos + rng.uniform(-jitter, jitter, pos.shape)


def _store(patches, pos, probe, shape, tmp_path, batch=16):
    store = PatchStore(probe, shape, len(pos), directory=tmp_path, batch=batch)
    for s in range(0, len(pos), 13):  # batches of another size than the store's
        store.add(patches[s : s + 13], pos[s : s + 13])
    return store


def _case(shape, seed, step, N=16):
    """(object, probe, positions, exact patches) of a jittered raster with 12 px margins."""
    obj = _object(shape, seed)
    probe = simulated_probe(N)
    pos = _scan(step, 12, shape[0] - 12, shape[1] - 12, seed + 1)
    return obj, probe, pos, extract_patches(obj, pos, N)


def _covered(w, probe, frac=0.1):
    return w > frac * (np.abs(probe) ** 2).max()


def test_store_stitch_equals_in_memory_stitch(tmp_path):
    obj, probe, pos, patches = _case((80, 70), 1, 3.0)
    ref, wref = stitch_patches(patches, pos, probe, obj.shape)
    with _store(patches, pos, probe, obj.shape, tmp_path) as store:
        rec, w = store.stitch()
        files = list(tmp_path.rglob("*.h5"))
        assert len(files) == 1  # the patches live on disk while the store is open
    assert not list(tmp_path.rglob("*.h5"))  # and are removed when it closes
    np.testing.assert_allclose(w, wref, rtol=1e-5, atol=1e-6)
    cov = _covered(w, probe)
    assert np.abs(rec - ref)[cov].max() < 1e-5  # complex64 storage


@pytest.mark.parametrize("step", [3.0, 6.0])  # dense and sparse (probe d90 ~ 8 px at N = 16)
def test_synchronisation_removes_random_patch_phase_offsets(tmp_path, step):
    obj, probe, pos, exact = _case((90, 80), 3, step)
    rng = np.random.default_rng(5)
    offsets = rng.uniform(-np.pi, np.pi, len(pos))  # what a single pattern cannot fix
    patches = exact * np.exp(1j * offsets)[:, None, None]
    with _store(patches, pos, probe, obj.shape, tmp_path) as store:
        plain, w = store.stitch()
        v, info = store.synchronise(refine_iterations=10)
        rec, w2 = store.stitch(v)
    assert np.allclose(np.abs(v), 1.0)
    np.testing.assert_array_equal(w, w2)
    cov = _covered(w, probe)
    # one global phase remains free: compare after the best global phase factor
    g = np.vdot(rec[cov], obj[cov])
    err = np.abs(rec[cov] * g / abs(g) - obj[cov])
    g0 = np.vdot(plain[cov], obj[cov])
    err0 = np.abs(plain[cov] * g0 / abs(g0) - obj[cov])
    assert err.mean() < 5e-3, err.mean()
    assert err0.mean() > 0.2  # unsynchronised averaging of random offsets destroys the object
    # recovered offsets = true ones up to the global phase
    d = np.angle(v * np.exp(1j * offsets))
    d = np.angle(np.exp(1j * (d - np.angle(np.exp(1j * d).mean()))))
    assert np.abs(d).max() < 0.05
    assert info["objective"] > info["objective_without"]


def test_synchronisation_leaves_consistent_patches_alone_and_is_deterministic(tmp_path):
    obj, probe, pos, patches = _case((70, 70), 6, 3.0)
    with _store(patches, pos, probe, obj.shape, tmp_path) as store:
        v1, _ = store.synchronise(5)
        v2, _ = store.synchronise(5)
    np.testing.assert_array_equal(v1, v2)
    assert np.abs(np.angle(v1)).max() < 0.02  # nothing to correct (gauge: mean offset zero)


def test_store_rejects_wrong_counts_and_shapes(tmp_path):
    obj, probe, pos, patches = _case((60, 60), 8, 4.0)
    with PatchStore(probe, obj.shape, len(pos) + 1, directory=tmp_path) as store:
        store.add(patches, pos)
        with pytest.raises(DatasetError, match="of .* patches were added"):
            store.stitch()
        with pytest.raises(DatasetError, match="more patches than"):
            store.add(patches[:2], pos[:2])
    with PatchStore(probe, obj.shape, 1, directory=tmp_path) as store, \
            pytest.raises(DatasetError, match="do not match"):
        store.add(patches[:1, :8], pos[:1])
    with pytest.raises(DatasetError, match="no patches"):
        PatchStore(probe, obj.shape, 0, directory=tmp_path)


def _offset_error(v, offsets, labels=None):
    """max |recovered - true| offset (rad), one free global phase per label (connected part)."""
    d = np.angle(v * np.exp(1j * offsets))
    labels = np.zeros(len(v), int) if labels is None else labels
    for lab in np.unique(labels):
        sel = labels == lab
        d[sel] = np.angle(np.exp(1j * (d[sel] - np.angle(np.exp(1j * d[sel]).mean()))))
    return np.abs(d).max()


@pytest.mark.parametrize("N, step, jitter, bound", [
    (16, 3.0, 0.0, 1e-5),  # integer positions: exact patches, the solver's own accuracy (~4e-8)
    (32, 3.3, 0.1, 1e-3),  # sub-pixel positions: Fourier interpolation limits it (~4.5e-4)
])
def test_block_synchronisation_recovers_offsets_on_a_large_scan(tmp_path, N, step, jitter, bound):
    side = 160 if N == 16 else 200
    obj, probe = _object((side, side), 3), simulated_probe(N)
    pos = _scan(step, N // 2 + 4, side - N // 2 - 4, side - N // 2 - 4, 4, jitter=jitter)
    assert len(pos) >= 2000
    offsets = np.random.default_rng(5).uniform(-np.pi, np.pi, len(pos))
    patches = extract_patches(obj, pos, N) * np.exp(1j * offsets)[:, None, None]
    with _store(patches, pos, probe, obj.shape, tmp_path, batch=256) as store:
        v, info = store.synchronise(10)  # the default: the block solver
    assert info["solver"] == "blocks" and np.prod(info["cells"]) >= 16  # many blocks were joined
    assert _offset_error(v, offsets) < bound  # the issue asks for 1e-3 rad
    assert info["objective"] > 2 * info["objective_without"]


def test_block_and_global_solvers_agree_on_a_small_scan(tmp_path):
    obj, probe, pos, exact = _case((80, 80), 11, 3.0)
    rng = np.random.default_rng(12)
    offsets = rng.uniform(-np.pi, np.pi, len(pos))
    noise = 0.1 * (rng.normal(size=exact.shape) + 1j * rng.normal(size=exact.shape))
    patches = exact * np.exp(1j * offsets)[:, None, None] + noise  # not exactly consistent
    with _store(patches, pos, probe, obj.shape, tmp_path) as store:
        vg, ig = store.synchronise(10, method="global")
        vb, ib = store.synchronise(10, method="blocks", cell_patches=32)
        rg, w = store.stitch(vg)
        rb, _ = store.stitch(vb)
    assert np.prod(ib["cells"]) >= 9 and ig["solver"] == "global"
    assert abs(ib["objective"] - ig["objective"]) < 1e-4 * ig["objective"]  # measured 5e-7
    d = np.angle(vb * np.conj(vg))  # both fix the gauge the same way (factors sum to > 0)
    assert np.sqrt(np.mean(d**2)) < 0.03  # measured 0.013 rad (the noise alone: 0.18 rad)
    cov = _covered(w, probe)
    assert np.abs(rb - rg)[cov].mean() < 0.015  # measured 0.0064 (object amplitude ~0.6)


def test_block_synchronisation_handles_disconnected_parts_within_a_block(tmp_path):
    """Two scan areas far apart in one cell: each is synchronised, each with its own phase."""
    obj = _object((80, 140), 21)
    probe = simulated_probe(16)
    left, right = _scan(3.0, 12, 68, 40, 1), _scan(3.0, 12, 68, 40, 2) + [0, 88]
    pos = np.concatenate([left, right])
    labels = np.repeat([0, 1], [len(left), len(right)])
    offsets = np.random.default_rng(9).uniform(-np.pi, np.pi, len(pos))
    patches = extract_patches(obj, pos, 16) * np.exp(1j * offsets)[:, None, None]
    with _store(patches, pos, probe, obj.shape, tmp_path) as store:
        v, info = store.synchronise(10, cell_patches=10_000)
    assert info["cells"] == [1, 1]
    assert _offset_error(v, offsets, labels) < 0.02


def test_block_grid_hats_are_a_partition_of_unity_on_cells_of_the_requested_size():
    from ptycho.reconstruct.sync import BlockGrid

    pts = np.random.default_rng(0).uniform(0, [300, 100], (3000, 2))
    grid = BlockGrid.for_points(pts, 100)
    assert abs(grid.side - np.sqrt(100 * 300 * 100 / 3000)) < 1  # cells of ~100 points: ~32 px
    assert grid.shape == (10, 4)
    counts = np.bincount(grid.cell_of(pts), minlength=grid.shape[0] * grid.shape[1])
    assert counts.sum() == 3000 and 60 < np.median(counts) < 140
    vid, phi = grid.hats(pts)
    np.testing.assert_allclose(phi.sum(axis=1), 1.0, atol=1e-12)
    assert phi.min() >= 0
    # the hat interpolates the vertex positions exactly (bilinear): sum_j phi_j x_j = x
    ny, nx = grid.shape[0] + 1, grid.shape[1] + 1
    vy, vx = np.divmod(np.arange(ny * nx), nx)
    vpos = np.asarray(grid.origin) + grid.side * np.stack([vy, vx], 1)
    np.testing.assert_allclose(np.einsum("nk,nkd->nd", phi, vpos[vid]), pts, atol=1e-9)
    # a vertex's support is the cells around it: every point with phi_j > 0 lies in them
    j = int(vid[0, 3])
    cells = [c for c0, c1 in grid.vertex_cells(j) for c in range(c0, c1 + 1)]
    on = np.any((vid == j) & (phi > 0), axis=1)
    assert np.isin(grid.cell_of(pts[on]), cells).all()


def test_coarse_problem_couples_every_overlapping_pair_once():
    """A_fg = sum_u conj(G_f) G_g / den from tiles arriving row by row equals the dense sum, also
    for tiles at the ends of vertex rows (no wrap-around to the next row)."""
    from ptycho.reconstruct.sync import BlockGrid, CoarseProblem

    rng = np.random.default_rng(3)
    grid = BlockGrid((0.0, 0.0), 10.0, (3, 2))  # 4 x 3 vertices, 10 px apart
    inv = rng.uniform(0.5, 1.5, (70, 60))
    coarse = CoarseProblem(grid, inv, reach=2)
    dense = []
    for j in range((3 + 1) * (2 + 1)):
        vy, vx = divmod(j, 3)
        box = (vy * 10, vx * 10, vy * 10 + 30, vx * 10 + 30)  # overlaps up to two vertices on
        G = rng.normal(size=(30, 30)) + 1j * rng.normal(size=(30, 30))
        assert coarse.add(j, box, G, 1.0) == j
        full = np.zeros(inv.shape, complex)
        full[box[0] : box[2], box[1] : box[3]] = G
        dense.append(full)
    from scipy.sparse import coo_matrix

    A = coo_matrix((coarse.vals, (coarse.rows, coarse.cols)), shape=(12, 12)).toarray()
    expect = np.array([[np.sum(np.conj(f) * g * inv) for g in dense] for f in dense])
    np.testing.assert_allclose(A, expect, rtol=1e-12, atol=1e-9)


def test_unknown_synchronisation_method_is_refused(tmp_path):
    from ptycho.errors import ConfigError

    obj, probe, pos, patches = _case((60, 60), 8, 4.0)
    with _store(patches, pos, probe, obj.shape, tmp_path) as store, \
            pytest.raises(ConfigError, match="must be one of .*'magic'"):
        store.synchronise(5, method="magic")


def _shared_bias(probe, amplitude=0.08):
    """A shared amplitude error like a network's: too bright at the probe's centre, too dark
    around it, |P|^2-weighted mean 0."""
    N = probe.shape[0]
    yy, xx = np.indices((N, N)) - N / 2
    r2 = yy**2 + xx**2
    e = np.exp(-r2 / (2 * 1.5**2)) - 0.6 * np.exp(-r2 / (2 * 3.5**2))
    w = np.abs(probe) ** 2
    e -= np.sum(w * e) / np.sum(w)
    return amplitude * e / np.abs(e).max()


def _with_amplitude_error(patches, e):
    amp = np.abs(patches)
    return (amp + e) * np.exp(1j * np.angle(patches))


def test_shared_patch_error_is_estimated_from_overlaps_and_removed(tmp_path):
    obj, probe, pos, exact = _case((90, 80), 7, 3.0)
    e0 = _shared_bias(probe)
    patches = _with_amplitude_error(exact, e0)
    with _store(patches, pos, probe, obj.shape, tmp_path) as store:
        plain, w = store.stitch()
        e, info = store.shared_error(iterations=30)
        rec, w2 = store.stitch(shared_error=e)
    np.testing.assert_array_equal(w, w2)
    lit = np.abs(probe) ** 2 > 0.1 * (np.abs(probe) ** 2).max()
    est = e  # patch pixels
    # the estimate is the injected error where the probe lights the patch (no ground truth used;
    # measured 0.23 of its size: patch pixels are matched to the grid within half a pixel)
    assert np.sqrt(np.mean((est - e0)[lit] ** 2)) < 0.3 * np.sqrt(np.mean(e0[lit] ** 2))
    assert info["iterations"] == 30 and info["last_step_rms"] < 1e-3
    cov = _covered(w, probe)
    err = np.sqrt(np.mean((np.abs(rec) - np.abs(obj))[cov] ** 2))
    err0 = np.sqrt(np.mean((np.abs(plain) - np.abs(obj))[cov] ** 2))
    assert err < 0.7 * err0  # measured 0.56
    # the amplitude only: the phase of every stitched pixel is unchanged
    ok = cov & (np.abs(rec) > 0.05)
    d = np.angle(rec[ok] * np.conj(plain[ok]))
    assert np.abs(d).max() < 0.02


def test_shared_patch_error_is_zero_for_consistent_patches_and_off_at_zero_iterations(tmp_path):
    obj, probe, pos, exact = _case((80, 70), 8, 3.0)
    with _store(exact, pos, probe, obj.shape, tmp_path) as store:
        plain, w = store.stitch()
        e, info = store.shared_error(iterations=10)
        rec, _ = store.stitch(shared_error=e)
        e_off, off = store.shared_error(iterations=0)
        with pytest.raises(ConfigError, match="shared_error_iterations"):
            store.shared_error(iterations=-1)
    assert info["rms"] < 2e-3  # Fourier resampling of the jittered positions only
    assert np.abs(rec - plain)[_covered(w, probe)].max() < 5e-3
    assert not e_off.any() and off["rms"] == 0.0 and off["last_step_rms"] == 0.0


def test_shared_patch_error_iterations_are_a_validated_study_key():
    from conftest import small_study_dict

    from ptycho.config import StudyConfig

    # left out: follows N (off up to N = 32, where it changed nothing; 10 iterations from N = 64)
    st = StudyConfig.from_dict(small_study_dict()).stitching
    assert st.shared_error_iterations is None
    assert [st.shared_error_iterations_at(N) for N in (16, 32, 64, 128)] == [0, 0, 10, 10]
    # a value in the study file holds at every N
    for value in (0, 4):
        st = StudyConfig.from_dict(small_study_dict(stitching={"shared_error_iterations": value})).stitching
        assert [st.shared_error_iterations_at(N) for N in (16, 128)] == [value, value]
    with pytest.raises(ConfigError, match="shared_error_iterations"):
        StudyConfig.from_dict(small_study_dict(stitching={"shared_error_iterations": -1}))
