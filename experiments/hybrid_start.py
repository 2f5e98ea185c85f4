"""Which network start helps the solver most? The hybrid arm started from another network arm.

    python experiments/hybrid_start.py --results results/dose_overlap/scaled --start adapted_g2 \
        [--cells 1e3_dense_r0 1e4_dense_r0 1e5_dense_r0] [--out results/experiments/hybrid_start.json]

The study's hybrid arm starts pty-chi LSQML from one network arm's stitched reconstruction
(``hybrid: {start_from: ...}``; default pinn_g2). This runs the same solve (the study's scaled
iterative settings and snapshots, 1 thread) from ``--start``'s reconstruction of each cell of a
finished run (``recon/<start>/<cell>.h5``), scores it with the study's evaluation, and puts it next
to the run's own flat-start (``iterative``) and hybrid arms with the report's own quality-time
code (``ptycho.reporting.frontier``): the start's SSIM, the final SSIM, and the epochs and seconds
to the flat-start solver's final SSIM (the seconds include the start arm's own reconstruction
time, e.g. the adapted arm's fine-tuning). Writes one JSON file and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _reach(cell, arm: str, q: str, target: float):
    curve = cell.curve(arm)
    if curve is None:
        return None, None
    return curve.reach(target, q)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True, help="a finished run's scale root")
    ap.add_argument("--study", type=Path, default=REPO / "studies/dose_overlap/study.yaml")
    ap.add_argument("--scale", default="scaled")
    ap.add_argument("--start", default="adapted_g2", help="the network arm to start from")
    ap.add_argument("--cells", nargs="+", default=["1e3_dense_r0", "1e4_dense_r0",
                                                   "1e5_dense_r0"])
    ap.add_argument("--out", type=Path, default=REPO / "results/experiments/hybrid_start.json")
    a = ap.parse_args(argv)

    from ptycho import api
    from ptycho.config import HybridConfig
    from ptycho.reporting.frontier import collect_cells
    from ptycho.reporting.records import load_records
    from ptycho.runner import limit_threads

    limit_threads(1)
    study = api.load_study(a.study)
    study = dataclasses.replace(study, hybrid=HybridConfig(start_from=a.start))
    rows = []
    with tempfile.TemporaryDirectory(prefix="hybrid-start-") as tmp:
        for cell in a.cells:
            test = a.results / "data" / cell / "test.h5"
            start = a.results / "recon" / a.start / f"{cell}.h5"
            for p in (test, start):
                if not p.is_file():
                    raise SystemExit(f"{p}: not found (a finished run of the study, with the "
                                     f"{a.start} arm, is needed)")
            out = Path(tmp) / cell
            out.mkdir()
            rec = api.reconstruct(study, a.scale, "hybrid", test, out / "recon.h5", start=start)
            ev = api.evaluate(rec.path, test, out, study=study)
            own = [a.results / "eval" / arm / cell / "metrics.json"
                   for arm in ("iterative", "hybrid", a.start)]
            # the new solve under its own arm name, so the run's hybrid stays beside it
            m = json.loads(ev.metrics_path.read_text())
            m["arm"] = "hybrid"
            renamed = out / "metrics_new.json"
            renamed.write_text(json.dumps(m))
            cells_new = collect_cells(load_records([own[0], own[2], renamed]))
            cells_run = collect_cells(load_records(own[:2] + [a.results / "eval" / (
                json.loads(own[1].read_text())["recon_info"]["start_arm"]) / cell
                / "metrics.json"]))
            (cn,), (cr,) = cells_new, cells_run
            row = {"cell": cell, "start": a.start, "run_start": cr.start_arm,
                   "solve_s": rec.wall_time_s}
            for q in ("amplitude", "phase"):
                target = cn.ssim["iterative"][q]
                flat_e, flat_t = _reach(cn, "iterative", q, target)
                new_e, new_t = _reach(cn, "hybrid", q, target)
                run_e, run_t = _reach(cr, "hybrid", q, target)
                row[q] = {
                    "flat_start_final": target,
                    "start_ssim": cn.ssim[a.start][q],
                    "new_final": cn.ssim["hybrid"][q],
                    "run_hybrid_final": cr.ssim["hybrid"][q],
                    "flat_epochs": flat_e, "flat_s": flat_t,
                    "new_epochs": new_e, "new_s": new_t,
                    "run_hybrid_epochs": run_e, "run_hybrid_s": run_t,
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"study": str(a.study), "scale": a.scale, "start": a.start,
                                 "rows": rows}, indent=2))

    def f(v, fmt="{:.1f}"):
        return "not reached" if v is None else fmt.format(v)

    print(f"\n| cell | quantity | start SSIM | final: flat start / run's hybrid ({rows[0]['run_start']})"
          f" / from {a.start} | epochs to the flat start's final: flat / run's hybrid / from "
          f"{a.start} | seconds: same |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for q in ("amplitude", "phase"):
            d = r[q]
            print(f"| {r['cell']} | {q} | {d['start_ssim']:.3f} | {d['flat_start_final']:.3f} / "
                  f"{d['run_hybrid_final']:.3f} / {d['new_final']:.3f} | "
                  f"{f(d['flat_epochs'])} / {f(d['run_hybrid_epochs'])} / {f(d['new_epochs'])} | "
                  f"{f(d['flat_s'])} / {f(d['run_hybrid_s'])} / {f(d['new_s'])} |")
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
