"""Disk-backed stitching with per-patch phase synchronisation (ptycho.reconstruct.patchstore)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.errors import DatasetError
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
