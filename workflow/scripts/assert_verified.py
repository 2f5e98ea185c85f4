"""Fail the workflow when the verification report failed; otherwise write a small 'ok' file.

input:  report (verification_report.json)
output: ok (text file)
"""

from ptycho.runner import run_job


def main(smk):
    import json

    from ptycho.data.io import write_text
    from ptycho.reporting.verify import assert_verified

    assert_verified(smk.input.report)
    with open(smk.input.report) as fh:
        report = json.load(fh)
    names = ", ".join(c["name"] for c in report["checks"])
    write_text(smk.output.ok, f"verified: study {report['study']} ({report['scale']} scale), "
                              f"{len(report['checks'])} checks passed: {names}\n")


run_job(snakemake, main)  # noqa: F821
