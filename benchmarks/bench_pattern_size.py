"""Pattern-size benchmark: do the trained arms' network defaults hold as the detector size N changes?

    python benchmarks/bench_pattern_size.py [--sizes 32 64 128] [--doses 1e4 1e5] \
        [--arms pinn_g1 pinn_g2 baseline adapted_g2 iterative] \
        [--variants default cnn-8-3-s0.5-lr0.002] \
        [--epochs 20] \
        [--out benchmarks/out/pattern_size.jsonl] [--data benchmarks/out/pattern_size_data]

One dense cell per (N, dose): the default study (``--study``) with its ``scaled`` scale's N and
object size replaced (N = 32: the study's own 224 x 192 object; N = 64: 512 x 448, the study as a
user who edits N would run it; N = 128: 448 x 384, a CPU-sized object like the full-scale
rehearsal), everything else the study's. Each cell is simulated once (``--data`` keeps it between
runs). Every run trains one arm in a fresh subprocess with one thread (as a study job runs), then
reconstructs the test split with the study's stitching and scores it with the study's evaluation --
the ``ptycho.api`` path of a workflow cell. ``adapted_g2`` trains the study's adaptation PINN
(``--epochs``), fine-tunes it on the test split's counts with the study's ``adaptation`` settings
and scores that (its epochs and patterns per second are the adaptation's). ``iterative`` runs the
study's pty-chi LSQML on the test split (no network, no variants): what the counts support at that
N and dose. A dose that is not one of the study's (``--doses 4e5``) is added to it, so a cell at
N = 64 can be given the photons per object pixel that a N = 32 cell gets.

Variants: ``default`` trains with the study's settings with the network keys that follow N
(filters, depth, support, learning rate, ensemble) left to the schema's rule, as they are when a
study file does not set them; ``<backbone>-<filters>-<depth>[-s<support>][-lr<rate>]`` sets them
explicitly (e.g. ``cnn-8-3``: the plain CNN, 8 filters, 3 downsamplings; the ensemble still
follows the rule: 3 residual U-Nets from N = 64, one CNN); ``-e<networks>`` after either sets the
ensemble (``default-e1``: one network); ``-se<iterations>`` sets the stitching's shared patch
error correction (``default-se10``; ``-se0`` off; without it the study's setting applies, which
follows N: on from N = 64). Every run appends one
JSON line to ``--out`` (a resumed benchmark skips runs already there): SSIM and MS-SSIM of
amplitude and phase and the flat object's, the incident photons per object pixel (fluence),
parameters, seconds per epoch (median), training patterns per second of one thread, inference
patterns per second, the peak resident memory of the train + reconstruct process, and the SSIMs
on the N = 32 study's pixel scale (``ptycho.evaluation.evaluate.ssim_at_scale`` with factor
N / 32: the probe spans 0.15 N pixels, so a larger N samples the same physical object with more
pixels, and the fixed 11-pixel SSIM window then judges a smaller physical area), and the
amplitude and phase resolutions where the FRC against the truth falls below 1/7 (pixels: a smooth
reconstruction can score a higher SSIM with a coarser resolution), and with the shared patch error
correction the |P|^2-weighted RMS of the error it estimated. A table of all runs is printed
at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "dose_overlap" / "study.yaml"
OBJECT_SIZES = {32: (224, 192), 64: (512, 448), 128: (448, 384)}
RULE_KEYS = ("filters", "depth", "support", "learning_rate", "ensemble")

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    a = json.loads(sys.argv[1])
    from ptycho.runner import limit_threads
    limit_threads(1)
    from ptycho import api
    study = api.load_study(a["study_dict"])
    d, cell = Path(a["dir"]), Path(a["cell_dir"])
    if a["mode"] == "simulate":
        c = api.simulate_cell(study, "scaled", a["dose"], "dense", out_dir=cell, figure=False)
        print(json.dumps({"n_train": c.summary.get("n_train"), "n_test": c.summary.get("n_test")}))
        raise SystemExit(0)
    t0 = time.perf_counter()

    def scores(rec, ev):
        # the evaluation's SSIM and MS-SSIM of the arm and the flat object, the fluence, and the
        # SSIMs on the N = 32 study's pixel scale (the probe spans 0.15 N pixels, so an N-pixel
        # study samples the same physical object with N / 32 times the pixels per side)
        from ptycho.evaluation.evaluate import ssim_at_scale
        M, flat = ev.metrics, ev.report["reference"]["flat_object"]
        return {
            "amp_ssim": M["amplitude"]["ssim"], "phase_ssim": M["phase"]["ssim"],
            "amp_ms_ssim": M["amplitude"]["ms_ssim"], "phase_ms_ssim": M["phase"]["ms_ssim"],
            "flat_amp_ssim": flat["amplitude"]["ssim"], "flat_phase_ssim": flat["phase"]["ssim"],
            "flat_amp_ms_ssim": flat["amplitude"]["ms_ssim"],
            "flat_phase_ms_ssim": flat["phase"]["ms_ssim"],
            "photons_per_px": ev.report["fluence"]["photons_per_px"],
            "n32_scale": ssim_at_scale(rec.path, cell / "test.h5", study.scale("scaled").N / 32),
            "n_test": rec.n_patterns, "recon_s": rec.wall_time_s,
            "shared_error_rms": rec.info.get("synchronisation", {}).get("shared_error", {}).get("rms"),
            "total_s": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    if a["arm"] == "iterative":  # the reference: what the counts support, no network
        rec = api.reconstruct(study, "scaled", "iterative", cell / "test.h5", d / "recon.h5",
                              threads=1)
        ev = api.evaluate(rec.path, cell / "test.h5", out_dir=d)
        print(json.dumps({"backbone": None, **scores(rec, ev)}))
        raise SystemExit(0)
    adapted = a["arm"].startswith("adapted")
    # the adapted arm: the study's adaptation PINN trained, then fine-tuned on the test counts
    trained_arm = "pinn_g%d" % (study.adapted_gridsize or 2) if adapted else a["arm"]
    td = d / "source" if adapted else d
    tc = study.scale("scaled").training
    want = {k: getattr(tc, k) for k in ("backbone", "filters", "depth", "support",
                                        "learning_rate", "ensemble", "epochs", "batch_size")}

    def same_training(bundle):  # a bundle written before ensembles had one network
        t = bundle["config"]["training"]
        return {k: t.get(k, 1 if k == "ensemble" else None) for k in want} == want

    # trained by an earlier, interrupted (or kept) run of this benchmark with the same settings
    if (td / "bundle.json").exists() and same_training(json.loads((td / "bundle.json").read_text())):
        m = api.TrainedArm(trained_arm, td / "model.keras", td / "bundle.json",
                           td / "history.csv", td / "loss.png",
                           json.loads((td / "bundle.json").read_text()))
    else:
        m = api.train_arm(study, "scaled", trained_arm, cell / "train.h5", out_dir=td, threads=1)
    b = m.info
    if adapted:
        m = api.adapt_arm(study, "scaled", m, cell / "test.h5", out_dir=d, threads=1)
        b = dict(b, epoch_times_s=m.info["epoch_times_s"], epochs_run=m.info["epochs_run"],
                 best_epoch=m.info["best_epoch"], fit_time_s=m.info["fit_time_s"])
    rec = api.reconstruct(study, "scaled", m.arm, cell / "test.h5", d / "recon.h5", model=m,
                          threads=1, tmp_dir=d)
    if adapted:  # its epochs pass over the test split
        b.update(n_train=rec.n_patterns, n_val=0)
    ev = api.evaluate(rec.path, cell / "test.h5", out_dir=d)
    tc = study.scale("scaled").training
    print(json.dumps({
        "backbone": [tc.backbone, tc.filters, tc.depth, tc.support, tc.rate(a["arm"])],
        "parameters": b["backbone"]["parameters"], "n_train": b["n_train"], "n_val": b["n_val"],
        "epochs_run": b["epochs_run"], "best_epoch": b["best_epoch"], "fit_s": b["fit_time_s"],
        "epoch_times_s": b["epoch_times_s"],
        "history": (d / "history.csv").read_text() if (d / "history.csv").exists() else "",
        **scores(rec, ev)}))
    """
)


def parse_variant(v: str) -> dict:
    """``default`` -> {} (the schema's rule); ``<backbone>-<filters>-<depth>[-s<s>][-lr<r>]``
    [-clip<global norm>][-cos (cosine schedule)][-b<batch size>][-e<networks> (an ensemble,
    ``training.ensemble``)][-se<iterations> (the stitching's shared patch error correction,
    ``stitching.shared_error_iterations``)];
    ``default-...`` is the rule with only those training options set."""
    if v in ("default", "solver"):  # solver: the iterative reference, the study's settings
        return {}
    parts = v.split("-")
    if parts[0] == "default":  # the rule's network, other training options changed
        return {k: val for k, val in parse_variant("cnn-0-0-" + "-".join(parts[1:])).items()
                if k not in ("backbone", "filters", "depth")}
    if len(parts) < 3:
        raise SystemExit(f"variant {v!r}: expected 'default' or <backbone>-<filters>-<depth>[-...]")
    out = {"backbone": parts[0], "filters": int(parts[1]), "depth": int(parts[2])}
    for p in parts[3:]:
        if p.startswith("lr"):
            out["learning_rate"] = float(p[2:])
        elif p.startswith("clip"):
            out["clip_norm"] = float(p[4:])
        elif p == "cos":
            out["schedule"] = "cosine"
        elif p.startswith("se") and p[2:].isdigit():
            out["shared_error_iterations"] = int(p[2:])
        elif p.startswith("e") and p[1:].isdigit():
            out["ensemble"] = int(p[1:])
        elif p.startswith("b") and p[1:].isdigit():
            out["batch_size"] = int(p[1:])
        elif p.startswith("s"):
            out["support"] = float(p[1:])
        else:
            raise SystemExit(f"variant {v!r}: unknown option {p!r}")
    return out


def study_dict(study: Path, N: int, object_size, variant: str, epochs: int | None,
               dose: str | None = None) -> dict:
    """The study with its scaled scale at N / object_size; the N-following network keys left to
    the schema's rule, then the variant's explicit values (if any) set; ``dose`` (a label such as
    ``4e5``) is added to the study's doses when it is not one of them."""
    from ptycho.config import dose_label, read_study_file

    d = read_study_file(study)
    if dose is not None and dose_label(float(dose)) not in {dose_label(x) for x in d["doses"]}:
        d["doses"] = sorted([*d["doses"], float(dose)])
    sc = d["scales"]["scaled"]
    sc["N"], sc["object_size"] = int(N), list(object_size)
    tr = {k: v for k, v in sc.get("training", {}).items() if k not in RULE_KEYS}
    v = parse_variant(variant)
    shared = v.pop("shared_error_iterations", None)
    if shared is not None:
        d["stitching"] = dict(d.get("stitching") or {}, shared_error_iterations=shared)
    tr.update(v)
    if epochs is not None:  # else the rule's: 10 up to N = 32, 20 above (resunet)
        tr["epochs"] = int(epochs)
    sc["training"] = tr
    return d


def rule_epochs(study: Path, N: int, object_size, variant: str, dose: str) -> int:
    """The epochs a network run of ``variant`` trains when ``--epochs`` is not given: the study's
    own, or where it leaves them out the rule's for the variant's backbone and N."""
    from ptycho.config import StudyConfig

    d = study_dict(study, N, object_size, variant, None, dose)
    return int(StudyConfig.from_dict(d).scale("scaled").training.epochs)


def run_child(job: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], capture_output=True,
                       check=False, text=True, cwd=REPO)
    if r.returncode != 0:
        return {"error": r.stderr[-2000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(STUDY))
    ap.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128])
    ap.add_argument("--doses", nargs="+", default=["1e4", "1e5"])
    ap.add_argument("--arms", nargs="+", default=["pinn_g1", "pinn_g2", "baseline"])
    ap.add_argument("--variants", nargs="+", default=["default", "cnn-8-3-s0.5-lr0.002"])
    ap.add_argument("--epochs", type=int, default=None,
                    help="most training epochs of every network run (default: the study's rule "
                    "for the variant's backbone and N, as a study file that does not set them "
                    "gets: resunet 10 up to N = 32 and 20 above, cnn 20)")
    ap.add_argument("--object-size", nargs=2, type=int, action="append", default=None,
                    metavar=("H", "W"), help="object size per --sizes entry (default: "
                    + ", ".join(f"N = {n}: {h} x {w}" for n, (h, w) in OBJECT_SIZES.items()) + ")")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "pattern_size.jsonl"))
    ap.add_argument("--data", default=str(REPO / "benchmarks" / "out" / "pattern_size_data"))
    ap.add_argument("--keep", action="store_true",
                    help="keep each run's model, reconstruction and evaluation under --data/runs "
                    "(a later run of the same arm and variant reuses a kept model only when it "
                    "was trained with the same network and training settings, and never "
                    "removes a kept run)")
    ap.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    ap.add_argument("--rescore", action="store_true",
                    help="add the SSIMs at the N = 32 pixel scale and the FRC resolutions to the runs "
                    "of --out that lack them and were kept (--keep), from their reconstructions "
                    "and evaluations; then print the table")
    a = ap.parse_args()

    out = Path(a.out)
    if a.rescore:
        rescore(out, Path(a.data))
    if a.table_only or a.rescore:
        print_table(out)
        return
    sizes = {N: (tuple(a.object_size[i]) if a.object_size else OBJECT_SIZES[N])
             for i, N in enumerate(a.sizes)}
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            if "error" not in r:
                done.add((r["N"], tuple(r["object_size"]), r["dose"], r["arm"], r["variant"],
                          r["epochs"]))
    for N, osz in sizes.items():
        for dose in a.doses:
            cell = Path(a.data) / f"N{N}_{osz[0]}x{osz[1]}_{dose}_dense"
            if not (cell / "test.h5").exists():
                cell.mkdir(parents=True, exist_ok=True)
                r = run_child({"mode": "simulate", "dose": dose, "dir": str(cell),
                               "cell_dir": str(cell),
                               "study_dict": study_dict(Path(a.study), N, osz, "default", 1, dose)})
                if "error" in r:
                    raise SystemExit(f"simulating N = {N}, {dose}: {r['error']}")
            for arm in a.arms:
                solver = arm == "iterative"  # no network: one run, no variants or epochs
                for v in (["solver"] if solver else a.variants):
                    epochs = None if solver else (a.epochs or rule_epochs(
                        Path(a.study), N, osz, v, dose))
                    key = (N, tuple(osz), dose, arm, v, epochs)
                    if key in done:
                        continue
                    run = Path(a.data) / "runs" / f"{cell.name}_{arm}_{v}_{epochs}"
                    kept_before = run.exists()  # an earlier --keep run's: never removed here
                    run.mkdir(parents=True, exist_ok=True)
                    r = run_child({"mode": "train", "arm": arm, "dir": str(run.resolve()),
                                   "cell_dir": str(cell.resolve()),
                                   "study_dict": study_dict(Path(a.study), N, osz, v,
                                                            epochs, dose)})
                    if "error" not in r:
                        r.update(frc_record(run))
                        if not (a.keep or kept_before):
                            shutil.rmtree(run, ignore_errors=True)
                    r = dict(N=N, object_size=list(osz), dose=dose, arm=arm, variant=v,
                             epochs=epochs, **r)
                    with open(out, "a") as fh:
                        fh.write(json.dumps(r) + "\n")
                    if "error" in r:
                        print(f"N {N} {dose} {arm} {v}: FAILED\n{r['error']}", flush=True)
                    else:
                        print(row(r), flush=True)
    print_table(out)


def frc_record(run: Path) -> dict:
    """{"frc17_px": {component: [resolution, interval low, interval high]}}: the amplitude and
    phase resolutions (pixels) where the FRC against the truth falls below 1/7, with the
    evaluation's block-bootstrap intervals (None where the study computes none), from the run's
    metrics.json ({} when it has none)."""
    path = run / "metrics.json"
    if not path.exists():
        return {}
    ev = json.loads(path.read_text())
    intervals = ev.get("intervals") or {}
    return {"frc17_px": {c: [ev["metrics"][c]["frc17_px"],
                             *(intervals.get(c, {}).get("frc17_px") or (None, None))]
                         for c in ("amplitude", "phase")}}


def rescore(out: Path, data: Path) -> None:
    """Add the N = 32-scale SSIMs (``n32_scale``: ``ssim_at_scale``'s record) and the FRC 1/7
    resolutions (``frc17_px``, from the evaluation's metrics.json) to the kept runs of ``out``
    that lack them (rewritten atomically)."""
    from ptycho.data.io import atomic_path
    from ptycho.evaluation.evaluate import ssim_at_scale

    lines = []
    for line in out.read_text().splitlines():
        r = json.loads(line)
        osz = r["object_size"]
        cell = data / f"N{r['N']}_{osz[0]}x{osz[1]}_{r['dose']}_dense"
        run = data / "runs" / f"{cell.name}_{r['arm']}_{r['variant']}_{r['epochs']}"
        if "error" not in r and "n32_scale" not in r and (run / "recon.h5").exists():
            r["n32_scale"] = ssim_at_scale(run / "recon.h5", cell / "test.h5", r["N"] / 32)
        if "error" not in r and not isinstance(r.get("frc17_px"), dict):
            r.update(frc_record(run))
        lines.append(json.dumps(r))
    with atomic_path(out, ".jsonl") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


HEADER = ("| N | dose | photons / px | arm | network | epochs | parameters | s / epoch | "
          "train patterns / s | amp SSIM | phase SSIM | amp / phase MS-SSIM | flat amp / phase | "
          "flat MS-SSIM | amp / phase SSIM at N = 32 pixels | flat at N = 32 pixels | "
          "amp / phase FRC 1/7 (px) [interval] |")


def _pair(r: dict, a: str, b: str) -> str:
    return f"{r[a]:.3f} / {r[b]:.3f}" if a in r and b in r else "–"


def _scaled(r: dict, who: str) -> str:
    """``reconstruction`` or ``flat_object`` amplitude / phase SSIM at the N = 32 pixel scale."""
    sc = (r.get("n32_scale") or {}).get(who)
    return f"{sc['amplitude']:.3f} / {sc['phase']:.3f}" if sc else "–"


def _frc(r: dict) -> str:
    """Amplitude / phase resolution (px) where the FRC against the truth falls below 1/7, each
    with its interval."""
    f = r.get("frc17_px")
    if not isinstance(f, dict):
        return "–"

    def one(v):
        x, lo, hi = ("–" if u is None else f"{u:.1f}" for u in v)
        return f"{x} [{lo}, {hi}]"
    return f"{one(f['amplitude'])} / {one(f['phase'])}"


def row(r: dict) -> str:
    ppx = f"{r['photons_per_px']:,.0f}" if "photons_per_px" in r else "–"
    tail = (f"{r['amp_ssim']:.3f} | {r['phase_ssim']:.3f} | "
            f"{_pair(r, 'amp_ms_ssim', 'phase_ms_ssim')} | "
            f"{r['flat_amp_ssim']:.3f} / {r['flat_phase_ssim']:.3f} | "
            f"{_pair(r, 'flat_amp_ms_ssim', 'flat_phase_ms_ssim')} | "
            f"{_scaled(r, 'reconstruction')} | {_scaled(r, 'flat_object')} | {_frc(r)} |")
    if r.get("backbone") is None:  # the iterative reference
        return (f"| {r['N']} | {r['dose']} | {ppx} | {r['arm']} | pty-chi LSQML (the study's) | – | "
                f"– | – | – | {tail}")
    kind, f, depth, s, lr = r["backbone"]
    sec = statistics.median(r["epoch_times_s"]) if r["epoch_times_s"] else float("nan")
    n = r["n_train"] + r["n_val"]
    net = f"{r['variant']} ({kind}-{f}-{depth}-s{s:g}-lr{lr:g})"
    return (f"| {r['N']} | {r['dose']} | {ppx} | {r['arm']} | {net} | {r['epochs']} | "
            f"{r['parameters']:,} | {sec:.1f} | {n / sec:.0f} | {tail}")


def print_table(path: Path) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows = [r for r in rows if "error" not in r]
    print("\n" + HEADER)
    print("|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|")
    key = lambda r: (r["N"], float(r["dose"]), r["arm"], r["variant"], r["epochs"] or 0)
    for r in sorted(rows, key=key):
        print(row(r))


if __name__ == "__main__":
    main()
