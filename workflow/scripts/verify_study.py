"""Verify a finished study: artifact inventory, provenance, then the verification report.

input:  expected (list of files), train (list), test (list, same order as train), histories (list),
        csv (metrics.csv), metrics (list of metrics.json), benchmarks (list of benchmark TSVs);
        with model-error levels also error_train, error_test, error_histories, error_metrics
output: report (verification_report.json), inventory (artifact_inventory.txt),
        provenance (provenance.json)
params: study (dict), scale, root (the study's result directory R); optional exclude (extra paths
        or fnmatch patterns relative to R left out of the inventory, e.g. the files that rules
        after this one write: report/verified.ok, logs/assert_verified.log)
The job succeeds when checks fail (the report says so); assert_verified.py turns that into an error.
"""

import logging

from ptycho.errors import PtychoError
from ptycho.runner import run_job

log = logging.getLogger("ptycho.verify")


def main(smk):
    from ptycho.data.io import write_json
    from ptycho.reporting.inventory import build_inventory, refined_entries, write_inventory
    from ptycho.reporting.provenance import build_provenance
    from ptycho.reporting.verify import verify_study

    root = str(smk.params.root)
    if len(smk.input.train) != len(smk.input.test):
        raise PtychoError(f"{len(smk.input.train)} train but {len(smk.input.test)} test datasets")
    # Files written during or after this job cannot be hashed into the inventory.
    exclude = [smk.output.report, smk.output.inventory, smk.output.provenance]
    # The script object carries no benchmark path: leave out this rule's benchmark by name.
    exclude += list(smk.log) + [f"benchmarks/{smk.rule}.tsv", f"benchmarks/{smk.rule}/*"]
    exclude += list(getattr(smk.params, "exclude", None) or [])
    entries = build_inventory(root, exclude)
    # the refined probes and positions stored in reconstructions (none where no arm refines)
    refined = refined_entries(root, entries)
    write_inventory(entries, smk.output.inventory, root=root, exclude=exclude, refined=refined)
    log.info("inventory: %d files, %d refined arrays", len(entries), len(refined))
    write_json(smk.output.provenance,
               build_provenance(smk.params.study, smk.params.scale, root, list(smk.input.benchmarks)))
    report = verify_study(
        smk.params.study, smk.params.scale, root,
        expected_files=list(smk.input.expected),
        dataset_pairs=list(zip(smk.input.train, smk.input.test)),
        histories=list(smk.input.histories),
        metrics_csv=smk.input.csv,
        metric_paths=list(smk.input.metrics),
        inventory_path=smk.output.inventory,
        error_dataset_pairs=list(zip(getattr(smk.input, "error_train", None) or [],
                                     getattr(smk.input, "error_test", None) or [])),
        error_histories=list(getattr(smk.input, "error_histories", None) or []),
        error_metric_paths=list(getattr(smk.input, "error_metrics", None) or []),
    )
    write_json(smk.output.report, report)
    for c in report["checks"]:
        log.info("%s %s: %s", "PASS" if c["passed"] else "FAIL", c["name"], c["detail"])
    for c in report.get("information") or []:
        log.info("NOTE %s: %s", c["name"], c["detail"])
    log.info("verification %s", "passed" if report["passed"] else f"FAILED: {report['failed']}")


run_job(snakemake, main)  # noqa: F821
