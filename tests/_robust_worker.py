"""pty-chi work for tests/test_robust_iterative.py, run in its own Python process (torch and
TensorFlow do not share a process: docs/conventions.md, "Two frameworks, two processes").

``python tests/_robust_worker.py OUT_DIR [GROUP]`` simulates small cells with model errors,
reconstructs each with the iterative arm under several options, evaluates each reconstruction
like the workflow (``evaluate_reconstruction``: phase SSIM, data residual with the arm's own probe
and positions, model errors against the truth) and writes the numbers to ``OUT_DIR/results.json``.

GROUP ``probe`` (the default): one cell of N = 16 (96 x 80 object, dose 1e5, dense) at three
error levels, 60 epochs.

exact         exact probe and positions, probe fixed (the reference score)
probe_fixed   nominal probe with a 25% defocus error, kept fixed
probe_refined the same nominal probe, refined (refine_probe)
modes1/modes2 data from two incoherent modes (80/20); the nominal probe is the first mode;
              one-mode and two-mode solves, both refining the probe

GROUP ``positions``: one cell of N = 32 (128 x 128 object, 243 test patterns, dose 1e5, dense)
with 1 px RMS position jitter, 100 epochs (the study's default position-correction settings).

positions_fixed the nominal positions, kept fixed
positions       the nominal positions, corrected (refine_positions)
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import small_study_dict

from ptycho.config import IntervalConfig, IterativeConfig, StudyConfig
from ptycho.data.generate import simulate_cell
from ptycho.evaluation.evaluate import evaluate_reconstruction
from ptycho.reconstruct.io import read_reconstruction, write_reconstruction
from ptycho.reconstruct.iterative import reconstruct_iterative

EPOCHS = 60
POSITION_EPOCHS = 100
ERRORS = {"probe": {"kind": "defocus", "levels": [0.25]},
          "positions": {"jitter_px": [1.0]},
          "coherence": {"fractions": [[0.8, 0.2]], "nominal_modes": "one"}}


def main(out: Path, group: str = "probe") -> None:
    out.mkdir(parents=True, exist_ok=True)
    d = small_study_dict(errors=ERRORS)
    if group == "positions":  # a probe large against the jitter: 1 px is inside its capture range
        d["scales"]["scaled"] = {"N": 32, "object_size": [128, 128], "chunk_size": 32}
        levels = ("jitter1",)
    else:
        levels = ("", "probe25", "modes2p80")
    study = StudyConfig.from_dict(d)
    files = {}
    for level in levels:
        name = level or "exact"
        tr, te = out / f"{name}_train.h5", out / f"{name}_test.h5"
        simulate_cell(study, "scaled", "1e5", "dense", tr, te, error_level=level)
        files[name] = te
    base = IterativeConfig(iterations=EPOCHS, batch_size=32, noise_model="gaussian",
                           refine_probe=False)
    if group == "positions":
        base = replace(base, iterations=POSITION_EPOCHS)
        cases = {
            "positions_fixed": ("jitter1", base),
            "positions": ("jitter1", replace(base, refine_positions=True)),
        }
    else:
        cases = {
            "exact": ("exact", base),
            "probe_fixed": ("probe25", base),
            "probe_refined": ("probe25", replace(base, refine_probe=True)),
            "modes1": ("modes2p80", replace(base, refine_probe=True)),
            "modes2": ("modes2p80", replace(base, refine_probe=True, probe_modes=2)),
        }
    results = {}
    for case, (cell, cfg) in cases.items():
        rec = reconstruct_iterative(files[cell], cfg, threads=1, device="cpu")
        path = out / f"{case}_recon.h5"
        write_reconstruction(path, rec)
        back = read_reconstruction(path)
        m = evaluate_reconstruction(path, files[cell], out / f"{case}_metrics.json",
                                    out / f"{case}_aligned.h5",
                                    intervals=IntervalConfig(resamples=50))
        results[case] = {
            "phase_ssim": m.metrics["phase"]["ssim"],
            "residual": m.metrics["data"]["poisson_deviance"],
            "model_errors": m.extra.get("model_errors"),
            "stored_probe": None if back.probe is None else list(back.probe.shape),
            "stored_positions": None if back.positions is None else list(back.positions.shape),
            "wall_time_s": rec.wall_time_s,
        }
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
