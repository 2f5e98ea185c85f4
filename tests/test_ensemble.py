"""Ensembles of networks per trained arm (``training.ensemble``): the rule that follows N, the
losses (every member against the same data, the mean over members), the model layout (member 0
keeps a single network's layer names) and what inference stitches (every member's patch)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_study_dict

from ptycho.config import StudyConfig
from ptycho.errors import ConfigError
from ptycho.models.spec import BackboneSpec, network_defaults


def test_the_ensemble_follows_N_and_explicit_values_win():
    assert network_defaults(32, "resunet")["ensemble"] == 1
    assert network_defaults(64, "resunet")["ensemble"] == 3
    assert network_defaults(128, "resunet")["ensemble"] == 3
    assert network_defaults(64, "cnn")["ensemble"] == 1

    def study(N, size, **training):
        d = small_study_dict()
        d["scales"]["scaled"] = {"N": N, "object_size": size,
                                 "training": {"backbone": "resunet", **training}}
        return StudyConfig.from_dict(d).scale("scaled").training

    assert study(16, [96, 80]).ensemble == 1
    assert study(64, [320, 320]).ensemble == 3
    assert study(64, [320, 320], ensemble=1).ensemble == 1
    assert study(16, [96, 80], ensemble=2).ensemble == 2
    for bad in (0, 9, 1.5):
        with pytest.raises(ConfigError, match="ensemble"):
            study(16, [96, 80], ensemble=bad)
    with pytest.raises(ConfigError, match="ensemble"):
        BackboneSpec("resunet", 8, 1, 0.5, ensemble=0).check(16)


def test_poisson_nll_of_an_ensemble_is_the_mean_over_its_members():
    from ptycho.models.physics_layer import poisson_nll

    rng = np.random.default_rng(3)
    counts = rng.poisson(20.0, (3, 8, 8, 4)).astype(np.float32)
    members = [rng.uniform(5, 40, (3, 8, 8, 4)).astype(np.float32) for _ in range(3)]
    stacked = np.concatenate(members, axis=-1)  # member-major, as StackMembers stacks them
    each = [poisson_nll(counts, m).numpy() for m in members]
    np.testing.assert_allclose(poisson_nll(counts, stacked).numpy(), np.mean(each, axis=0),
                               rtol=1e-5)


@pytest.mark.parametrize("offset_free", [True, False])
def test_support_mae_of_an_ensemble_is_the_mean_over_its_members(offset_free):
    from ptycho.models.baseline import SupportMAE

    rng = np.random.default_rng(4)
    loss = SupportMAE(16, 8, phase_offset_free=offset_free)
    label = rng.uniform(-1, 1, (2, 16, 16, 2)).astype(np.float32)
    members = [rng.uniform(-1, 1, (2, 16, 16, 2)).astype(np.float32) for _ in range(3)]
    each = [np.asarray(loss.call(label, m)) for m in members]
    stacked = np.asarray(loss.call(label, np.concatenate(members, axis=-1)))
    np.testing.assert_allclose(stacked, np.mean(each, axis=0), rtol=1e-5)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_an_ensemble_pinn_has_independent_members_and_one_physics_layer(gridsize):
    from ptycho.models.pinn import build_pinn, ensemble_size
    from ptycho.physics.probe import simulated_probe
    from ptycho.training.adapt import is_encoder

    C = gridsize * gridsize
    probe = simulated_probe(16)
    single = build_pinn(16, gridsize, 1e4, probe, 3.0, BackboneSpec("resunet", 8, 1, 0.5))
    pair = build_pinn(16, gridsize, 1e4, probe, 3.0, BackboneSpec("resunet", 8, 1, 0.5, 2))
    names = {layer.name for layer in single.layers}
    assert {"object_patches", "physics", "stem"} <= names
    assert not any(n.startswith("m1_") for n in names)  # one network: the names it always had
    assert pair.output_shape == (None, 16, 16, 2 * C)
    assert ensemble_size(single, C) == 1 and ensemble_size(pair, C) == 2
    assert len([layer for layer in pair.layers if layer.name == "physics"]) == 1
    w0 = pair.get_layer("stem").get_weights()[0]
    w1 = pair.get_layer("m1_stem").get_weights()[0]
    assert w0.shape == w1.shape and not np.allclose(w0, w1)  # their own random starts
    assert is_encoder("m1_stem") and is_encoder("m1_enc0_down") and is_encoder("enc0_down")
    assert not is_encoder("m1_dec0_up") and not is_encoder("m1_head_norm")


def test_a_training_job_asks_for_memory_and_time_that_grow_with_the_ensemble_and_N(tmp_path):
    import yaml
    from test_workflow import TINY, make_workdir, snakemake

    from ptycho.training.cost import network_job_seconds

    def train_request(ensemble, name, N=None):
        """(mem_mb, runtime) of the first pinn_g1 training job, and its cell's pattern counts."""
        study = yaml.safe_load(TINY.read_text())
        study["scales"]["scaled"].setdefault("training", {})["ensemble"] = ensemble
        if N is not None:  # the object grows with the pattern, as the scan needs
            study["scales"]["scaled"].update(N=N, object_size=[8 * N, 8 * N])
        r = snakemake(make_workdir(tmp_path / name, study), "-n", "phase_g_scaled")
        assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
        jobs = [b for b in r.stdout.split("rule train_pinn:")[1:] if "gridsize=1" in b]
        block = jobs[0].split("resources:", 1)[1].splitlines()[0]
        return (int(block.split("mem_mb=", 1)[1].split(",")[0]),
                int(block.split("runtime=", 1)[1].split(",")[0]))

    # each network beyond the first adds half a one-network job (measured peak memory of three
    # networks at N = 64 and 128: 1.6-2.0 times one network's); the tiny cells take the 5-minute
    # floor of the runtime
    assert (train_request(1, "one"), train_request(3, "three")) == ((2500, 5), (2500 * 2, 5))
    # memory in proportion to N above N = 64 (one network peaked at 2.7 GB at N = 128); the
    # runtime is 3 x the planned seconds of one thread for the cell's patterns, N and networks
    one64, three128 = train_request(1, "n64", N=64), train_request(3, "n128", N=128)
    assert one64[0] == 2500 and three128[0] == 10000
    assert one64[1] == 5 and three128[1] == 21
    # the planned time grows with the networks and the pattern's pixels
    assert network_job_seconds(128, 1, 600, 10, 400, 3) > 2.9 * (
        network_job_seconds(128, 1, 600, 10, 400, 1) - 30)
    assert network_job_seconds(64, 1, 1000, 10, 0) - 30 == pytest.approx(2 * 2.7 * 10)
