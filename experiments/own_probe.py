"""Does a probe refined on the train split help every arm when the files carry an approximate probe?

    python experiments/own_probe.py make --out results/experiments/own_probe
    nice snakemake --cores 1 phase_g_scaled --config study=results/experiments/own_probe/given.yaml
    nice snakemake --cores 1 phase_g_scaled --config study=results/experiments/own_probe/refined.yaml
    python experiments/own_probe.py compare --out results/experiments/own_probe

``make`` simulates the cells of the tiny test study (``tests/data/tiny_study.yaml``: N = 16,
64 x 64 object, doses 1e3 and 1e5, dense) at a 25% defocus probe error
(``errors: probe: defocus 0.25``, docs/robustness.md): the counts come from the true probe, the
files' ``/probe`` is the defocused one. Each split is exported as a PtychoPINN NPZ (the project's
own ``export_npz``: ``probeGuess`` is the defocused probe, ``objectGuess`` the ground truth; the
true probe is not exported), and two external-data studies read those files: ``given.yaml``
(``probe_source: given``: every arm is told the file's probe) and ``refined.yaml``
(``probe_source: train_refined``). ``compare`` prints each arm's data residual (mean Poisson
deviance per test pattern, re-projected with the probe the arm was told or ended with) and SSIMs
in both runs, and writes ``compare_own_probe.json``. ``make`` also writes ``net_given.yaml`` and
``net_refined.yaml``: dose 1e5 only, every arm, the network arms trained for 30 epochs instead of
3 (so the networks learn something, and the hybrid arm starts from such a network); compare their
runs with ``compare --networks``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_study.yaml"
LEVEL = "probe25"


def make(out: Path) -> None:
    from ptycho import api
    from ptycho.interop.npz import export_npz

    out = out.resolve()
    d = yaml.safe_load(TINY.read_text())
    sim = dict(d, study="own_probe_source",
               errors={"probe": {"kind": "defocus", "levels": [0, 0.25]}})
    study = api.load_study(sim)
    cells = []
    for dose in study.doses:
        for view in study.overlaps:
            cell = api.simulate_cell(study, "scaled", dose, view, out / "sim" / f"{dose:g}_{view}",
                                     figure=False, error_level=LEVEL)
            files = {}
            for split in ("train", "test"):
                npz = out / "files" / f"{dose:g}_{view}" / f"{split}.npz"
                export_npz(getattr(cell, split), npz, study.geometry)
                files[split] = {"format": "npz", "path": str(npz)}
            cells.append({"dose": dose, "overlap": view, **files})
    for name, source in (("given", "given"), ("refined", "train_refined")):
        st = dict(d, study=f"own_probe_{name}",
                  data={"source": "external", "ground_truth": True, "cells": cells,
                        "probe_source": source})
        (out / f"{name}.yaml").write_text(yaml.safe_dump(st, sort_keys=False))
        # every arm, the networks trained for 30 epochs instead of 3 (dose 1e5 only)
        scales = yaml.safe_load(yaml.safe_dump(d["scales"]))
        scales["scaled"]["training"].update(epochs=30, patience=30)
        net = dict(st, study=f"own_probe_net_{name}", doses=[100000], scales=scales,
                   data=dict(st["data"], cells=[c for c in cells if c["dose"] == 100000]))
        (out / f"net_{name}.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
    print(f"wrote {out}/given.yaml, refined.yaml, net_given.yaml and net_refined.yaml")


def compare(out: Path, results: Path, prefix: str = "own_probe") -> None:
    rows = {}
    for name in ("given", "refined"):
        root = results / f"{prefix}_{name}" / "scaled" / "eval"
        for m in sorted(root.glob("*/*/metrics.json")):
            rec = json.loads(m.read_text())
            met = rec["metrics"]
            rows.setdefault((m.parent.parent.name, m.parent.name), {})[name] = {
                "residual": met["data"]["poisson_deviance"],
                "amplitude_ssim": met.get("amplitude", {}).get("ssim"),
                "phase_ssim": met.get("phase", {}).get("ssim")}
    table = []
    print(f"{'arm':10s} {'cell':14s} {'residual given':>15s} {'refined':>9s} "
          f"{'amp SSIM given':>15s} {'refined':>8s} {'phase SSIM given':>17s} {'refined':>8s}")
    for (arm, cell), v in sorted(rows.items()):
        g, r = v.get("given"), v.get("refined")
        if g is None or r is None:
            continue
        table.append({"arm": arm, "cell": cell, "given": g, "refined": r,
                      "residual_lower": r["residual"] < g["residual"]})
        print(f"{arm:10s} {cell:14s} {g['residual']:15.2f} {r['residual']:9.2f} "
              f"{g['amplitude_ssim']:15.3f} {r['amplitude_ssim']:8.3f} "
              f"{g['phase_ssim']:17.3f} {r['phase_ssim']:8.3f}")
    (out / f"compare_{prefix}.json").write_text(json.dumps(table, indent=1))
    print(f"every arm's residual lower with the refined probe: "
          f"{all(t['residual_lower'] for t in table)} ({len(table)} arm x cell pairs)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["make", "compare"])
    ap.add_argument("--out", type=Path, default=Path("results/experiments/own_probe"))
    ap.add_argument("--results", type=Path, default=Path("results"),
                    help="the runs' results directory (config 'results')")
    ap.add_argument("--networks", action="store_true",
                    help="compare the net_given / net_refined runs (every arm, 30-epoch networks)")
    a = ap.parse_args(argv)
    if a.step == "make":
        make(a.out)
    else:
        compare(a.out, a.results, "own_probe_net" if a.networks else "own_probe")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
