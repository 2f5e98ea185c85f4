"""Snakemake adapter: an arm's reconstructions of the two half scans of a test split, each with
what the arm uses on the full scan: the iterative arm's settings (its refinement included), a
network arm's trained model, and for the adapted arm its PINN adapted to each half's own counts
(with the study's adaptation settings, probe refinement included), so the halves stay
independent.

input: half1, half2 (and model, bundle for a network arm: the adapted arm's source PINN);
output: half1, half2; params: study (dict), scale, overlap, arm; threads; wildcards: replicate.
One framework per job (TensorFlow or pty-chi).
"""

import tempfile
from pathlib import Path

from ptycho import api
from ptycho.runner import run_job


def main(smk) -> None:
    study = api.load_study(smk.params.study)
    arm = smk.params.arm
    ident = study.identity(arm)
    model = None if ident.is_solver else (smk.input.model, smk.input.bundle)
    tmp_dir = getattr(smk.resources, "tmpdir", None)
    for half, out in ((smk.input.half1, smk.output.half1), (smk.input.half2, smk.output.half2)):
        if ident.kind != "adapted":
            api.reconstruct(study, smk.params.scale, arm, half, out, model=model,
                            threads=smk.threads, tmp_dir=tmp_dir, overlap=smk.params.overlap)
            continue
        with tempfile.TemporaryDirectory(dir=tmp_dir) as d:
            adapted = api.adapt_arm(study, smk.params.scale, model, half, Path(d),
                                    threads=smk.threads,
                                    replicate=int(smk.wildcards.replicate))
            b = adapted.info
            api.reconstruct(study, smk.params.scale, adapted.arm, half, out, model=adapted,
                            threads=smk.threads, tmp_dir=tmp_dir, overlap=smk.params.overlap,
                            extra_time_s=b["fit_time_s"],
                            extra_info={"adaptation_s": b["fit_time_s"],
                                        "adaptation": b["adaptation"],
                                        "source_arm": b["source_arm"]})


run_job(snakemake, main)  # noqa: F821
