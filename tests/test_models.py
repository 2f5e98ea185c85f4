"""Models and stitching: physics layer, Poisson loss, overlap constraint, stitching, builders.

Nothing here trains; ``tests/test_training.py`` covers training, inference and bundles.
"""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from ptycho.physics.forward import expected_counts, extract_patches
from ptycho.physics.probe import simulated_probe
from ptycho.reconstruct.stitch import StitchAccumulator, shift_to_grid, stitch_patches


def smooth_object(shape, seed=0, sigma=3.0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    amp = 0.6 + 0.3 * np.tanh(gaussian_filter(rng.standard_normal(shape), sigma) * 4)
    ph = 0.8 * np.tanh(gaussian_filter(rng.standard_normal(shape), sigma) * 4)
    return amp * np.exp(1j * ph)


# ----------------------------------------------------------------------------- import hygiene
def test_package_imports_do_not_import_tensorflow():
    code = ("import sys, ptycho, ptycho.models, ptycho.training, ptycho.reconstruct, "
            "ptycho.reconstruct.stitch; assert 'tensorflow' not in sys.modules, 'tf imported'; "
            "assert 'keras' not in sys.modules, 'keras imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- physics layer
def test_physics_layer_matches_numpy_forward_model():
    from ptycho.models.physics_layer import PoissonForward, expected_counts_tf

    N, dose = 32, 1.0e5
    probe = simulated_probe(N)
    obj = smooth_object((80, 80), seed=1, sigma=1.0)
    pos = np.array([[30.0, 30.0], [41.3, 37.8], [50.5, 44.25]])
    patches = extract_patches(obj, pos, N)
    ref = expected_counts(patches, probe, dose)
    got = expected_counts_tf(patches, probe, dose).numpy()
    assert np.abs(got - ref).max() / ref.max() < 1e-4
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-4
    # the layer, channels-last with C = 3 and the log-scale initialised at 0
    layer = PoissonForward(N, dose, probe)
    x = patches.transpose(1, 2, 0)[None]
    lam = layer([x.real.astype("f4"), x.imag.astype("f4")]).numpy()[0].transpose(2, 0, 1)
    assert float(layer.log_scale.numpy()) == 0.0
    assert np.abs(lam - ref).max() / ref.max() < 1e-4
    # a transparent object gives exactly `dose` photons per pattern
    ones = np.ones((1, N, N, 1), np.float32)
    assert layer([ones, 0 * ones]).numpy().sum() == pytest.approx(dose, rel=1e-5)
    # the learned scale multiplies the counts by exp(s)
    layer.log_scale.assign(np.log(2.0))
    assert layer([ones, 0 * ones]).numpy().sum() == pytest.approx(2 * dose, rel=1e-5)


def test_physics_layer_reproduces_golden_counts(golden_path):
    from ptycho.models.physics_layer import expected_counts_tf

    with h5py.File(golden_path, "r") as f:
        obj, probe = f["object"][()], f["probe"][()]
        pos, dose, ref = f["positions"][()], float(f.attrs["dose"]), f["expected_counts"][()]
    got = expected_counts_tf(extract_patches(obj, pos, probe.shape[0]), probe, dose).numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4


def test_poisson_nll_is_the_shifted_negative_log_likelihood():
    from ptycho.models.physics_layer import PoissonNLL, poisson_nll

    rng = np.random.default_rng(0)
    lam = rng.uniform(0.1, 50, (4, 8, 8, 1)).astype("f4")
    k = rng.poisson(lam).astype("f4")
    eps = 1e-6
    ref = (lam - k * np.log(lam + eps)) - (k - k * np.log(k + eps))
    got = poisson_nll(k, lam).numpy()
    np.testing.assert_allclose(got, ref.reshape(4, -1).mean(axis=1), rtol=1e-4, atol=1e-4)
    # the minimum over lambda is at lambda = k (value 0) and the loss is never negative there
    assert np.abs(poisson_nll(k, k).numpy()).max() < 1e-5
    assert float(PoissonNLL()(k, lam)) == pytest.approx(float(got.mean()), rel=1e-5)


def test_support_mae_absolute_and_offset_free_phase():
    import keras

    from ptycho.models.baseline import SupportMAE

    rng = np.random.default_rng(1)
    N, S = 8, 4
    y = np.stack([rng.uniform(0.2, 1, (3, N, N)), rng.uniform(-1, 1, (3, N, N))], -1).astype("f4")
    p = np.stack([rng.uniform(0.2, 1, (3, N, N)), rng.uniform(-1, 1, (3, N, N))], -1).astype("f4")
    c = slice(2, 6)
    d = (y - p)[:, c, c]
    absolute = np.abs(d).reshape(3, -1).mean(1)
    dph = d[..., 1] - d[..., 1].mean(axis=(1, 2), keepdims=True)
    free = (np.abs(d[..., 0]).reshape(3, -1).sum(1) + np.abs(dph).reshape(3, -1).sum(1)) / (2 * S * S)
    np.testing.assert_allclose(SupportMAE(N, S).call(y, p).numpy(), absolute, rtol=1e-5)
    np.testing.assert_allclose(SupportMAE(N, S, phase_offset_free=True).call(y, p).numpy(), free,
                               rtol=1e-5)
    # a constant phase per patch (what one diffraction pattern cannot tell) costs nothing in the
    # offset-free loss and its full size in the absolute one; amplitude errors count in both
    shifted = y.copy()
    shifted[..., 1] += np.array([0.7, -0.4, 0.2], "f4")[:, None, None]
    assert np.abs(SupportMAE(N, S, phase_offset_free=True).call(y, shifted).numpy()).max() < 1e-6
    np.testing.assert_allclose(SupportMAE(N, S).call(y, shifted).numpy(), [0.35, 0.2, 0.1],
                               rtol=1e-5)
    scaled = y.copy()
    scaled[..., 0] *= 0.5
    np.testing.assert_allclose(SupportMAE(N, S, phase_offset_free=True).call(y, scaled).numpy(),
                               (0.5 * y[:, c, c, 0]).reshape(3, -1).mean(1) / 2, rtol=1e-5)
    # the option survives a save/reload of a model compiled with it
    cfg = keras.losses.deserialize(keras.losses.serialize(SupportMAE(N, S, True))).get_config()
    assert cfg["phase_offset_free"] is True and cfg["size"] == S


# ----------------------------------------------------------------------------- overlap constraint
def _group_patches(obj, positions, groups, N):
    from ptycho.data.grouping import group_offsets

    t = extract_patches(obj, positions[groups.ravel()], N)
    t = t.reshape(len(groups), groups.shape[1], N, N).transpose(0, 2, 3, 1)
    return t, group_offsets(positions, groups).astype(np.float32)


@pytest.mark.parametrize("weighted", [False, True])
def test_overlap_constraint_keeps_consistent_patches(weighted):
    from ptycho.data.grouping import make_groups
    from ptycho.models.pinn import OverlapConstraint, member_weight

    N = 16
    w = member_weight(simulated_probe(N)) if weighted else None
    obj = smooth_object((64, 64), seed=2, sigma=1.0)
    rng = np.random.default_rng(3)
    yy, xx = np.meshgrid(np.arange(14, 50, 4), np.arange(14, 50, 5), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1) + rng.integers(-1, 2, (yy.size, 2))  # integer
    pos = pos.astype(np.float64)
    groups = make_groups(pos, 2, 6, N, rng)
    t, off = _group_patches(obj, pos, groups, N)
    assert np.abs(off).max() > 2 and np.any(off[..., 0] != off[..., 1])
    re, im = OverlapConstraint(N, weight=w)([t.real.astype("f4"), t.imag.astype("f4"), off])
    out = re.numpy() + 1j * im.numpy()
    assert np.abs(out - t).max() < 1e-5
    # sub-pixel offsets on a smooth object: linear interpolation, a small error in the centre
    pos_f = pos + rng.uniform(-0.5, 0.5, pos.shape)
    obj_s = smooth_object((64, 64), seed=2, sigma=3.0)
    t, off = _group_patches(obj_s, pos_f, groups, N)
    re, im = OverlapConstraint(N, weight=w)([t.real.astype("f4"), t.imag.astype("f4"), off])
    err = np.abs(re.numpy() + 1j * im.numpy() - t)[:, 4:12, 4:12]
    assert err.mean() < 0.01


@pytest.mark.parametrize("weighted", [False, True])
def test_aligned_overlap_constraint_removes_member_phase_offsets(weighted):
    """Members cut from one object but each with its own constant phase offset (what one
    diffraction pattern cannot tell): the plain average washes the consensus out, the aligned one
    returns the patches with the seed's offset, and changes nothing for consistent patches."""
    from ptycho.data.grouping import make_groups
    from ptycho.models.pinn import OverlapConstraint, member_weight

    N = 16
    w = member_weight(simulated_probe(N)) if weighted else None
    obj = smooth_object((64, 64), seed=5, sigma=1.5)
    rng = np.random.default_rng(6)
    yy, xx = np.meshgrid(np.arange(14, 50, 4), np.arange(14, 50, 5), indexing="ij")
    pos = (np.stack([yy.ravel(), xx.ravel()], 1) + rng.integers(-1, 2, (yy.size, 2))).astype(float)
    groups = make_groups(pos, 2, 6, N, rng)
    t, off = _group_patches(obj, pos, groups, N)
    aligned = OverlapConstraint(N, weight=w, align_phases=True)
    re, im = aligned([t.real.astype("f4"), t.imag.astype("f4"), off])
    assert np.abs(re.numpy() + 1j * im.numpy() - t).max() < 1e-5
    offsets = rng.uniform(-2.5, 2.5, (len(groups), 1, 1, 4))
    ts = t * np.exp(1j * offsets)
    seed = np.exp(1j * offsets[..., :1])  # the consensus carries the seed's offset
    re, im = aligned([ts.real.astype("f4"), ts.imag.astype("f4"), off])
    assert np.abs(re.numpy() + 1j * im.numpy() - t * seed).max() < 1e-4
    re, im = OverlapConstraint(N, weight=w)([ts.real.astype("f4"), ts.imag.astype("f4"), off])
    plain = re.numpy() + 1j * im.numpy()
    assert np.abs(plain - t * seed)[..., 0].mean() > 0.05  # the plain average mixes the offsets
    # the layer's option is saved with it
    assert OverlapConstraint.from_config(aligned.get_config()).align_phases is True


def test_overlap_constraint_makes_inconsistent_patches_agree():
    from ptycho.models.pinn import OverlapConstraint

    N, C = 8, 4
    rng = np.random.default_rng(4)
    re = rng.standard_normal((3, N, N, C)).astype("f4")
    im = rng.standard_normal((3, N, N, C)).astype("f4")
    off = np.zeros((3, C, 2), np.float32)
    off[:, 1] = [0, 2]  # member 1 two pixels to the right of the seed
    off[:, 2] = [3, -1]
    off[:, 3] = [-2, 1]
    layer = OverlapConstraint(N)
    a_re, a_im = layer([re, im, off])
    a = a_re.numpy() + 1j * a_im.numpy()
    # seed pixel (y, x) and member-1 pixel (y, x - 2) are the same object pixel: now equal
    np.testing.assert_allclose(a[:, :, 2:, 0], a[:, :, :-2, 1], atol=1e-5)
    # where only the seed covers a pixel, and the others do not, the value is the seed's own
    # (member 1 covers columns >= 2 of the seed; member 2 rows >= 3; member 3 columns <= 6 from col -1)
    # applying the constraint twice changes nothing (it is a projection)
    b_re, b_im = layer([a_re, a_im, off])
    np.testing.assert_allclose(b_re.numpy(), a_re.numpy(), atol=1e-5)
    np.testing.assert_allclose(b_im.numpy(), a_im.numpy(), atol=1e-5)


def test_weighted_overlap_constraint_is_the_weighted_mean_of_the_members():
    """Integer offsets: every member's output pixel is sum_c w_c v_c / sum_c w_c over the members
    covering that object pixel (w_c the weight at the member's own patch pixel), computed here
    directly on an object-sized canvas; the probe-lit member dominates."""
    from ptycho.models.pinn import MEMBER_WEIGHT_FLOOR, OverlapConstraint, member_weight

    N, C = 16, 4
    probe = simulated_probe(N)
    w = member_weight(probe)
    assert w.min() == pytest.approx(MEMBER_WEIGHT_FLOOR, rel=1e-3)
    assert w.max() == pytest.approx(1 + MEMBER_WEIGHT_FLOOR, rel=1e-6)
    rng = np.random.default_rng(8)
    re = rng.standard_normal((2, N, N, C)).astype("f4")
    im = rng.standard_normal((2, N, N, C)).astype("f4")
    off = np.array([[[0, 0], [0, 3], [4, -2], [-3, -3]], [[0, 0], [2, 2], [-5, 1], [1, -6]]],
                   np.float32)
    a_re, a_im = OverlapConstraint(N, weight=w)([re, im, off])
    got = a_re.numpy() + 1j * a_im.numpy()
    v = re + 1j * im
    for b in range(2):
        num = np.zeros((3 * N, 3 * N), complex)
        den = np.zeros((3 * N, 3 * N))
        for c in range(C):
            y0, x0 = N + int(off[b, c, 0]), N + int(off[b, c, 1])
            num[y0 : y0 + N, x0 : x0 + N] += w * v[b, :, :, c]
            den[y0 : y0 + N, x0 : x0 + N] += w
        mean = num / np.where(den > 0, den, 1)
        for c in range(C):
            y0, x0 = N + int(off[b, c, 0]), N + int(off[b, c, 1])
            np.testing.assert_allclose(got[b, :, :, c], mean[y0 : y0 + N, x0 : x0 + N], atol=1e-4)
    # at the seed's probe centre the seed's own value dominates the consensus far more than with
    # a uniform average
    u_re, u_im = OverlapConstraint(N)([re, im, off])
    uni = u_re.numpy() + 1j * u_im.numpy()
    c0 = (slice(None), slice(N // 2 - 1, N // 2 + 2), slice(N // 2 - 1, N // 2 + 2), 0)
    assert np.abs(got[c0] - v[c0]).mean() < 0.5 * np.abs(uni[c0] - v[c0]).mean()


def test_overlap_constraint_rejects_a_bad_weight():
    from ptycho.errors import ConfigError
    from ptycho.models.pinn import OverlapConstraint

    with pytest.raises(ConfigError, match=r"non-negative, non-zero \(8, 8\)"):
        OverlapConstraint(8, weight=np.ones((8, 9)))
    with pytest.raises(ConfigError, match="overlap weight"):
        OverlapConstraint(8, weight=-np.ones((8, 8)))


# ----------------------------------------------------------------------------- stitching
def test_stitching_exact_patches_reproduces_object():
    N = 16
    obj = smooth_object((70, 60), seed=5, sigma=1.0)
    probe = simulated_probe(N)
    yy, xx = np.meshgrid(np.arange(10, 60, 3), np.arange(10, 50, 3), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    patches = extract_patches(obj, pos, N)
    rec, w = stitch_patches(patches, pos, probe, obj.shape)
    covered = w > 0.1 * (np.abs(probe) ** 2).max()
    assert covered.sum() > 1500
    assert np.abs(rec - obj)[covered].max() < 1e-5
    assert np.all(rec[w == 0] == 0)
    # weight = sum of |P|^2: the total equals n * sum |P|^2 when no patch leaves the object
    total = len(pos) * (np.abs(probe.astype(np.complex128)) ** 2).sum()
    assert w.sum() == pytest.approx(total, rel=1e-9)
    # incremental accumulation in batches gives the same result
    acc = StitchAccumulator(probe, obj.shape)
    for s in range(0, len(pos), 7):
        acc.add(patches[s : s + 7], pos[s : s + 7])
    rec2, w2 = acc.result()
    np.testing.assert_allclose(rec2, rec, atol=1e-12)
    np.testing.assert_allclose(w2, w, atol=1e-12)


def test_stitching_subpixel_positions_consistent_with_extract_patches():
    N = 16
    obj = smooth_object((70, 60), seed=6, sigma=5.0)
    probe = simulated_probe(N)
    rng = np.random.default_rng(7)
    yy, xx = np.meshgrid(np.arange(12, 58, 2.5), np.arange(12, 48, 2.5), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1) + rng.uniform(-0.4, 0.4, (yy.size, 2))
    rec, w = stitch_patches(extract_patches(obj, pos, N), pos, probe, obj.shape)
    covered = w > 0.1 * (np.abs(probe) ** 2).max()
    err = np.abs(rec - obj)[covered]
    assert err.mean() < 2e-3 and err.max() < 2e-2, (err.mean(), err.max())
    # a one-pixel shift of every position would be far worse: the placement is not off by one
    rec_bad, _ = stitch_patches(extract_patches(obj, pos, N), pos + 1.0, probe, obj.shape)
    assert np.abs(rec_bad - obj)[covered].mean() > 5 * err.mean()


def test_shift_to_grid_inverts_the_subpixel_shift():
    obj = smooth_object((40, 40), seed=9, sigma=5.0)
    N = 16
    pos = np.array([[20.3, 19.6]])
    patch = extract_patches(obj, pos, N)
    frac = pos - N / 2 - np.floor(pos - N / 2)
    y0, x0 = np.floor(pos[0] - N / 2).astype(int)
    ref = obj[y0 - 1 : y0 + N + 1, x0 - 1 : x0 + N + 1]  # pixels corner - 1 ... corner + N
    err = np.abs(shift_to_grid(patch, frac)[0] - ref)[4:-4, 4:-4].max()
    wrong = np.abs(shift_to_grid(patch, -frac)[0] - ref)[4:-4, 4:-4].max()
    assert err < 5e-3 and wrong > 5 * err


# ----------------------------------------------------------------------------- builders
def test_builders_have_the_documented_shapes_and_no_shared_state():
    from ptycho.models.baseline import build_baseline
    from ptycho.models.pinn import build_pinn
    from ptycho.models.spec import BackboneSpec

    N = 16
    probe = simulated_probe(N)
    cnn = BackboneSpec("cnn", 4, 2)
    m1 = build_pinn(N, 1, 1e4, probe, 3.0, cnn, amplitude_init=0.8)
    m2 = build_pinn(N, 2, 1e4, probe, 3.0, cnn)
    mb = build_baseline(N, 3.0, cnn)
    assert m1.output.shape[1:] == (N, N, 1)
    assert [tuple(i.shape[1:]) for i in m2.inputs] == [(N, N, 4), (4, 2)]
    assert mb.output.shape[1:] == (N, N, 2)
    # the supervised baseline has no physics layer; the PINN has one, with one trainable scalar
    assert "physics" not in [layer.name for layer in mb.layers]
    phys = m1.get_layer("physics")
    assert [w.name for w in phys.trainable_weights] == ["log_scale"]
    # an untrained PINN starts near the flat object of the given transmission
    out = m1.get_layer("object_patches").output
    import keras

    obj = keras.Model(m1.inputs, out).predict_on_batch(np.ones((2, N, N, 1), np.float32) * 9)
    amp = np.hypot(obj[0], obj[1])
    assert abs(float(np.median(amp)) - 0.8) < 0.1
    from ptycho.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        build_pinn(12, 1, 1e4, simulated_probe(12), 3.0, BackboneSpec("cnn", 4, 3))


# ----------------------------------------------------------------------------- backbones
def _resunet_parameters(f: int, depth: int, support: float, N: int) -> int:
    """Closed-form trainable parameter count of the residual U-Net (see ptycho.models.backbones):
    convolutions k*k*cin*cout + cout, GroupNorm 2*channels."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    def block(cin, c):
        return (conv(1, cin, c) if cin != c else 0) + 2 * cin + conv(3, cin, c) + 2 * c + conv(3, c, c)
    n = conv(3, 1, f)
    for i in range(depth):
        n += block(f * 2**i, f * 2**i) + conv(3, f * 2**i, f * 2 ** (i + 1))
    n += 2 * block(f * 2**depth, f * 2**depth)
    size, level = N // 2**depth, depth
    while size < N * support:
        level, size = level - 1, size * 2
        n += conv(2, f * 2 ** (level + 1), f * 2**level) + block(2 * f * 2**level, f * 2**level)
    c = f * 2**level
    return n + 2 * c + 2 * conv(3, c, 1)


@pytest.mark.parametrize("filters,depth,support", [(4, 2, 1.0), (8, 1, 1.0), (4, 2, 0.5)])
def test_resunet_shapes_ranges_and_parameter_count(filters, depth, support):
    import keras

    from ptycho.models.backbones import count_parameters
    from ptycho.models.baseline import build_baseline
    from ptycho.models.pinn import build_pinn, object_model
    from ptycho.models.spec import BackboneSpec

    N = 16
    spec = BackboneSpec("resunet", filters, depth, support)
    keras.utils.set_random_seed(3)
    mb = build_baseline(N, 2.0, spec, amplitude_init=0.7)
    mp = build_pinn(N, 2, 1e4, simulated_probe(N), 2.0, spec, amplitude_init=0.7)
    expected = _resunet_parameters(filters, depth, support, N)
    # the PINN and the baseline have the same backbone; the PINN adds one scalar (its log-scale)
    assert count_parameters(mb) == expected and count_parameters(mp) == expected + 1
    # untrained: exactly the flat object (zero-initialised heads)
    x = np.random.default_rng(0).poisson(5.0, (3, N, N, 1)).astype(np.float32)
    out = mb.predict_on_batch(x)
    assert out.shape == (3, N, N, 2)
    np.testing.assert_allclose(out[..., 0], 0.7, atol=1e-6)
    np.testing.assert_allclose(out[..., 1], 0.0, atol=1e-6)
    # random (trained-like) weights: amplitude in (0, 1), phase in (-pi, pi); outside the support
    # the patch is the flat object
    for layer in mb.layers:
        if layer.name in ("amp_out", "phase_out"):
            layer.kernel.assign(np.random.default_rng(1).normal(0, 0.3, layer.kernel.shape))
    out = mb.predict_on_batch(x)
    assert 0 < out[..., 0].min() and out[..., 0].max() < 1
    assert -np.pi < out[..., 1].min() and out[..., 1].max() < np.pi and out[..., 1].std() > 0.1
    S = int(N * support)
    a = (N - S) // 2
    inner = np.zeros((N, N), bool)
    inner[a : a + S, a : a + S] = True
    np.testing.assert_allclose(out[:, ~inner, 0], 0.7, atol=1e-6)
    np.testing.assert_allclose(out[:, ~inner, 1], 0.0, atol=1e-6)
    assert out[:, inner, 0].std() > 0.01
    # g = 2 folds the group into the batch: one set of weights, patches of shape (B, N, N, 4)
    re, im = object_model(mp).predict_on_batch({"counts": np.repeat(x, 4, -1)[:2],
                                                 "offsets": np.zeros((2, 4, 2), np.float32)})
    assert re.shape == im.shape == (2, N, N, 4)


@pytest.mark.parametrize("kind,N,depth,support,match", [
    ("resunet", 64, 5, 1.0, "at most 4 downsamplings"),
    ("resunet", 18, 2, 1.0, "divisible by 2\\^depth"),
    ("cnn", 12, 3, 1.0, "divisible by 2\\^depth"),
    ("resunet", 16, 1, 0.25, "cannot be upsampled"),
    ("resunet", 16, 2, 0.3, "support must be one of"),
    ("transformer", 16, 2, 1.0, "backbone must be one of"),
])
def test_backbone_that_cannot_take_N_is_a_clear_error(kind, N, depth, support, match):
    from ptycho.errors import ConfigError
    from ptycho.models.spec import check_backbone

    with pytest.raises(ConfigError, match=match):
        check_backbone(N, kind, depth, support)


def test_study_with_a_backbone_that_cannot_take_N_is_rejected_before_training():
    from conftest import small_study_dict

    from ptycho.config import StudyConfig
    from ptycho.errors import ConfigError

    d = small_study_dict()
    d["scales"]["scaled"]["training"] = {"backbone": "resunet", "depth": 5}
    with pytest.raises(ConfigError, match="scales/scaled/training.*at most 4 downsamplings"):
        StudyConfig.from_dict(d)
