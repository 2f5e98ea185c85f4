"""pty-chi engine runs for tests/test_solver_engines.py, in their own Python process.

Importing torch/pty-chi after TensorFlow segfaults (docs/conventions.md, "Two frameworks, two
processes"), so the test suite runs ``python tests/_engine_worker.py OUT_DIR`` and asserts on the
numbers this script writes to ``OUT_DIR/results.json``.

Cases
-----
options   the pty-chi options LSQML is built with (no engine key, and engine: lsqml with its
          default step size written out) against tests/data/lsqml_options.json, the options the
          solve was built with before engines existed (same options: same object).
lsqml     the same solve with no engine key and with ``engine: lsqml`` (objects compared).
combos    ePIE refining two probe modes, rPIE refining positions (cross-correlation), DM refining
          the probe: 3 epochs each.
engines   every engine, flat start, known probe, on the tiny study's dense 1e5 cell (N = 16,
          64 x 64 object): phase / amplitude SSIM and data residual of the result and of the flat
          start, scored by ptycho.api.evaluate.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 10
ENGINES = ("lsqml", "pie", "epie", "rpie", "dm")


def main(out: Path) -> None:
    from ptycho import api
    from ptycho.config import IterativeConfig
    from ptycho.reconstruct import iterative as it
    from ptycho.reconstruct.io import write_reconstruction

    torch, ptychi_api, _ = it._import_ptychi()
    torch.set_num_threads(1)
    res: dict = {}

    ref = json.loads((ROOT / "tests" / "data" / "lsqml_options.json").read_text())
    cfgs = {"default": {"iterations": 100, "batch_size": 64, "noise_model": "gaussian",
                        "refine_probe": False},
            "poisson_probe": {"iterations": 7, "batch_size": 16, "noise_model": "poisson",
                              "refine_probe": True, "refine_positions": True}}
    same = {}
    for name, kw in cfgs.items():
        for tag, extra in (("absent", {}), ("explicit", {"engine": "lsqml", "step_size": 1.0})):
            o = it._build_options(ptychi_api, IterativeConfig(**kw, **extra), 419, (224, 192),
                                  "cpu", 1)
            d = json.loads(json.dumps(dataclasses.asdict(o), default=str))
            same[f"{name}_{tag}"] = d == ref[name]
    res["options"] = same

    raw = yaml.safe_load((ROOT / "tests" / "data" / "tiny_study.yaml").read_text())
    raw["doses"] = [100000]
    study = api.load_study(raw)
    cell = api.simulate_cell(study, "scaled", "1e5", "dense", out / "cell", figure=False)
    base = {"iterations": EPOCHS, "batch_size": 32, "noise_model": "gaussian", "refine_probe": False}

    a = it.reconstruct_iterative(cell.test, IterativeConfig(**base), threads=1, device="cpu")
    b = it.reconstruct_iterative(cell.test, IterativeConfig(**base, engine="lsqml"), threads=1,
                                 device="cpu")
    res["lsqml"] = {"same_object": bool(np.array_equal(a.object, b.object)),
                    "same_snapshots": bool(np.array_equal(a.snapshots.objects,
                                                          b.snapshots.objects)),
                    "solver": b.info["solver"], "info_keys_same": sorted(a.info) == sorted(b.info)}

    engines = {}
    for eng in ENGINES:
        rec = it.reconstruct_iterative(cell.test, IterativeConfig(**base, engine=eng), threads=1,
                                       device="cpu")
        path = out / f"{eng}.h5"
        write_reconstruction(path, rec)
        ev = api.evaluate(path, cell.test, out / eng, study=study)
        m, flat = ev.metrics, ev.report["reference"]["flat_object"]
        engines[eng] = {"phase_ssim": m["phase"]["ssim"], "amplitude_ssim": m["amplitude"]["ssim"],
                        "deviance": m["data"]["poisson_deviance"],
                        "flat_phase_ssim": flat["phase"]["ssim"],
                        "flat_amplitude_ssim": flat["amplitude"]["ssim"],
                        "flat_deviance": flat["data"]["poisson_deviance"],
                        "solver": rec.info["solver"], "engine": rec.info.get("engine"),
                        "costs_finite": bool(np.all(np.isfinite(rec.info["cost_history"]))),
                        "n_costs": len(rec.info["cost_history"]),
                        "info": {k: v for k, v in rec.info.items()
                                 if k in ("step_size", "object_alpha", "probe_alpha",
                                          "relaxation", "inertia", "noise_model",
                                          "batch_size")}}
    res["engines"] = engines

    combos = {}
    for tag, kw in (("epie_probe_modes", {"engine": "epie", "refine_probe": True,
                                          "probe_modes": 2}),
                    ("rpie_positions", {"engine": "rpie", "refine_positions": True,
                                        "position_correction": "cross_correlation",
                                        "position_start_epoch": 1}),
                    ("dm_probe", {"engine": "dm", "refine_probe": True})):
        rec = it.reconstruct_iterative(cell.test, IterativeConfig(**dict(base, iterations=3, **kw)),
                                       threads=1, device="cpu")
        combos[tag] = {"finite": bool(np.all(np.isfinite(rec.object))),
                       "probe_modes": rec.info.get("probe_modes"),
                       "position_change_rms_px": rec.info.get("position_change_rms_px")}
    res["combos"] = combos
    res["n_test"] = int(a.n_patterns)
    (out / "results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
