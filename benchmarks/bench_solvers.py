"""Solver-engine benchmark: which pty-chi engine reconstructs the study's cells best, and how fast?

    python benchmarks/bench_solvers.py [--doses 1e3 1e4 1e5] [--overlaps dense sparse] \
        [--engines lsqml lsqml_poisson pie epie rpie dm] [--epochs 100] \
        [--set epie:step_size=0.5 ...] [--out benchmarks/out/solvers.jsonl] \
        [--data benchmarks/out/solvers_data]

Every cell is the default study's (``--study``) scaled cell at that dose and overlap, simulated
once with ``ptycho.api.simulate_cell`` (``--data`` keeps it between runs). Every run reconstructs
the test split with ``ptycho.api.reconstruct`` (arm ``iterative``: flat start, known probe, the
study's scaled iterative block with ``engine`` and the ``--set`` parameters added, one thread)
and scores it with ``ptycho.api.evaluate`` (the study's evaluation region, alignment and block
bootstrap 95% intervals). Engines: the names of ``iterative.engine`` (each with its defaults), and
``lsqml_poisson`` (LSQML with the Poisson noise model). ``--set ENGINE:KEY=VALUE`` overrides an
engine parameter (e.g. ``dm:relaxation=0.5``; the run's label gets the setting appended).

Every run appends one JSON line to ``--out`` (a resumed benchmark skips runs already there):
phase / amplitude SSIM with their intervals, the data residual (Poisson deviance per pattern) and
the flat start's, the solve's wall time (pty-chi import excluded) and the final cost. A CSV of all
runs is written beside it and a table is printed at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "dose_overlap" / "study.yaml"
ENGINES = ("lsqml", "lsqml_poisson", "pie", "epie", "rpie", "dm")

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    a = json.loads(sys.argv[1])
    from ptycho.runner import limit_threads
    limit_threads(1)
    from ptycho import api
    study = api.load_study(a["study_dict"])
    cell, d = Path(a["cell_dir"]), Path(a["dir"])
    if not (cell / "test.h5").exists():
        api.simulate_cell(study, "scaled", a["dose"], a["overlap"], out_dir=cell, figure=False)
    r = api.reconstruct(study, "scaled", "iterative", cell / "test.h5", d / "recon.h5", threads=1,
                        device="cpu")
    ev = api.evaluate(d / "recon.h5", cell / "test.h5", out_dir=d, study=study)
    m, rec = ev.metrics, ev.report
    out = {"wall_s": r.wall_time_s, "n_patterns": r.n_patterns,
           "final_cost": r.info["cost_history"][-1], "solver": r.info["solver"],
           "settings": {k: r.info[k] for k in ("object_step_size", "step_size", "object_alpha",
                        "probe_alpha", "relaxation", "inertia", "noise_model",
                        "batch_size") if k in r.info},
           "deviance": m["data"]["poisson_deviance"],
           "flat_deviance": rec["reference"]["flat_object"]["data"]["poisson_deviance"],
           "flat_phase_ssim": rec["reference"]["flat_object"]["phase"]["ssim"],
           "flat_amplitude_ssim": rec["reference"]["flat_object"]["amplitude"]["ssim"]}
    for part in ("phase", "amplitude"):
        out[part + "_ssim"] = m[part]["ssim"]
        out[part + "_ssim_ci"] = rec["intervals"][part]["ssim"]
    print("RESULT " + json.dumps(out))
    """
)


def parse_sets(items) -> dict:
    out: dict = {}
    for it in items or ():
        try:
            eng, kv = it.split(":", 1)
            k, v = kv.split("=", 1)
            out.setdefault(eng, {})[k] = yaml.safe_load(v)
        except ValueError:
            raise SystemExit(f"--set {it!r}: expected ENGINE:KEY=VALUE")
    return out


def block_for(base: dict, engine: str, epochs: int, extra: dict) -> dict:
    b = dict(base, iterations=epochs)
    if engine == "lsqml_poisson":
        b["noise_model"] = "poisson"
    elif engine != "lsqml":
        b["engine"] = engine
    b.update(extra)
    return b


def label_of(engine: str, extra: dict) -> str:
    return engine + "".join(f",{k}={v}" for k, v in sorted(extra.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default=str(STUDY))
    ap.add_argument("--doses", nargs="+", default=["1e3", "1e4", "1e5"])
    ap.add_argument("--overlaps", nargs="+", default=["dense", "sparse"])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES))
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--set", nargs="*", default=[], dest="sets")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "solvers.jsonl"))
    ap.add_argument("--data", default=str(REPO / "benchmarks" / "out" / "solvers_data"))
    a = ap.parse_args(argv)
    bad = [e for e in a.engines if e not in ENGINES]
    if bad:
        raise SystemExit(f"--engines: unknown {bad}; expected some of {list(ENGINES)}")
    sets = parse_sets(a.sets)
    raw = yaml.safe_load(Path(a.study).read_text())
    base = dict(raw["scales"]["scaled"]["iterative"])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["dose"], r["overlap"], r["label"], r["epochs"]))
    data = Path(a.data)
    for dose in a.doses:
        for ov in a.overlaps:
            for eng in a.engines:
                extra = sets.get(eng, {})
                label = label_of(eng, extra)
                if (dose, ov, label, a.epochs) in done:
                    continue
                study = json.loads(json.dumps(raw))
                study["scales"]["scaled"]["iterative"] = block_for(base, eng, a.epochs, extra)
                run_dir = data / "runs" / f"{dose}_{ov}_{label.replace(',', '_')}_{a.epochs}"
                run_dir.mkdir(parents=True, exist_ok=True)
                job = {"study_dict": study, "cell_dir": str(data / f"{dose}_{ov}"),
                       "dir": str(run_dir), "dose": dose, "overlap": ov}
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], cwd=REPO,
                                      capture_output=True, text=True, check=False)
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                rec = {"dose": dose, "overlap": ov, "label": label, "engine": eng,
                       "epochs": a.epochs, "extra": extra,
                       "process_s": time.perf_counter() - t0}
                if proc.returncode != 0 or not lines:
                    rec["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                else:
                    rec.update(json.loads(lines[-1][len("RESULT "):]))
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(summary_line(rec), flush=True)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    write_csv(rows, out.with_suffix(".csv"))
    print("\n".join(summary_line(r) for r in rows))
    return 0


def summary_line(r: dict) -> str:
    if "error" in r:
        return f"{r['dose']:>4} {r['overlap']:<6} {r['label']:<28} ERROR {r['error'][:80]}"
    pc, ac = r["phase_ssim_ci"], r["amplitude_ssim_ci"]
    return (f"{r['dose']:>4} {r['overlap']:<6} {r['label']:<28} phase {r['phase_ssim']:.3f} "
            f"[{pc[0]:.3f}, {pc[1]:.3f}]  amp {r['amplitude_ssim']:.3f} [{ac[0]:.3f}, "
            f"{ac[1]:.3f}]  dev {r['deviance']:.3g} (flat {r['flat_deviance']:.3g})  "
            f"{r['wall_s']:.1f} s")


def write_csv(rows, path: Path) -> None:
    keys = ["dose", "overlap", "label", "engine", "epochs", "phase_ssim", "phase_lo", "phase_hi",
            "amplitude_ssim", "amplitude_lo", "amplitude_hi", "deviance", "flat_deviance",
            "wall_s", "error"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            r = dict(r)
            if "phase_ssim_ci" in r:
                r["phase_lo"], r["phase_hi"] = r["phase_ssim_ci"]
                r["amplitude_lo"], r["amplitude_hi"] = r["amplitude_ssim_ci"]
            w.writerow(r)


if __name__ == "__main__":
    sys.exit(main())
