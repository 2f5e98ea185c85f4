# Phase G, study level: tables, grids, figures, verification, inventory, provenance.
rule build_metrics_table:
    input:
        metrics=metric_files,
        error_metrics=error_metric_files,
    output:
        csv=report(
            f"{ROOT}/report/metrics.csv",
            caption="../report/metrics.rst",
            category="6. Data files (download)",
            labels={"file": "metrics.csv (tidy, every metric)"},
        ),
        quality_time=report(
            f"{ROOT}/report/quality_time.csv",
            caption="../report/quality_time_table.rst",
            category="6. Data files (download)",
            labels={"file": "quality_time.csv (quality against time)"},
        ),
    log:
        f"{ROOT}/logs/build_metrics_table.log",
    params:
        study=STUDY_DICT,
        scale="{scale}",
    script:
        "../scripts/report_tables.py"


rule build_ssim_grid:
    input:
        csv=f"{ROOT}/report/metrics.csv",
        metrics=metric_files,
        histories=history_files,
    output:
        ssim_grid=report(
            f"{ROOT}/report/figures/ssim_grid.png",
            caption="../report/ssim_grid.rst",
            category="3. Grids",
            labels={"figure": "SSIM grid"},
        ),
        ms_ssim_grid=report(
            f"{ROOT}/report/figures/ms_ssim_grid.png",
            caption="../report/ssim_grid.rst",
            category="3. Grids",
            labels={"figure": "MS-SSIM grid"},
        ),
        delta_grid=report(
            f"{ROOT}/report/figures/delta_grid.png",
            caption="../report/delta_grid.rst",
            category="3. Grids",
            labels={"figure": "SSIM differences"},
        ),
        metric_vs_dose=report(
            f"{ROOT}/report/figures/metric_vs_dose.png",
            caption="../report/metric_vs_dose.rst",
            category="4. Curves",
            labels={"figure": "metrics versus dose"},
        ),
        frc=report(
            f"{ROOT}/report/figures/frc.png",
            caption="../report/frc.rst",
            category="4. Curves",
            labels={"figure": "FRC curves"},
        ),
        losses=report(
            f"{ROOT}/report/figures/losses.png",
            caption="../report/loss.rst",
            category="4. Curves",
            labels={"figure": "loss curves"},
        ),
    log:
        f"{ROOT}/logs/build_ssim_grid.log",
    params:
        history_labels=history_labels,
        study=STUDY_DICT,
    script:
        "../scripts/report_grids.py"


rule plot_quality_time:
    input:
        metrics=metric_files,
    output:
        png=report(
            f"{ROOT}/report/figures/quality_time.png",
            caption="../report/quality_time.rst",
            category="4. Curves",
            labels={"figure": "quality against wall time"},
        ),
    log:
        f"{ROOT}/logs/plot_quality_time.log",
    script:
        "../scripts/plot_quality_time.py"


rule plot_comparison:
    input:
        aligned=lambda wc: [
            f"{root(wc.scale)}/eval/{a}/{CELL.format(**wc)}/aligned.h5" for a in ARMS
        ],
        metrics=lambda wc: [
            f"{root(wc.scale)}/eval/{a}/{CELL.format(**wc)}/metrics.json" for a in ARMS
        ],
    output:
        png=report(
            f"{ROOT}/report/comparisons/{CELL}.png",
            caption="../report/comparison.rst",
            category="5. Comparisons per cell",
            subcategory="overlap view {overlap}",
            labels={
                "dose (photons/exposure)": "{dose}{level}",
                "replicate": "{replicate}",
            },
        ),
    log:
        f"{ROOT}/logs/plot_comparison/{CELL}.log",
    params:
        arms=ARMS,
        title=lambda wc: f"{STUDY_NAME} ({wc.scale}): dose {wc.dose} photons/exposure, {wc.overlap} overlap"
        + (f", error level {error_level(wc)}" if error_level(wc) else "")
        + f", replicate {wc.replicate}",
    script:
        "../scripts/report_cell.py"


rule fit_dose_resolution:
    input:
        csv=f"{ROOT}/report/metrics.csv",
        metrics=metric_files,
    output:
        csv=report(
            f"{ROOT}/report/dose_resolution.csv",
            caption="../report/dose_resolution.rst",
            category="6. Data files (download)",
            labels={"file": "dose_resolution.csv (power-law fits)"},
        ),
        fluence=report(
            f"{ROOT}/report/figures/fluence.png",
            caption="../report/fluence.rst",
            category="4. Curves",
            labels={"figure": "SSIM versus fluence"},
        ),
        fits=report(
            f"{ROOT}/report/figures/dose_resolution.png",
            caption="../report/dose_resolution.rst",
            category="4. Curves",
            labels={"figure": "dose-resolution fits"},
        ),
    log:
        f"{ROOT}/logs/fit_dose_resolution.log",
    params:
        study=STUDY_DICT,
    script:
        "../scripts/report_fluence.py"


if ERROR_KINDS:

    rule build_robustness:
        input:
            csv=f"{ROOT}/report/metrics.csv",
            metrics=metric_files,
            error_metrics=error_metric_files,
        output:
            **{
                f"figure_{k}": report(
                    f"{ROOT}/report/figures/robustness_{k}.png",
                    caption="../report/robustness.rst",
                    category="4. Curves",
                    labels={"figure": f"SSIM against {k} error"},
                )
                for k in ERROR_KINDS
            },
            csv=report(
                f"{ROOT}/report/robustness.csv",
                caption="../report/robustness.rst",
                category="6. Data files (download)",
                labels={
                    "file": "robustness.csv (loss against the exact probe and positions)"
                },
            ),
        log:
            f"{ROOT}/logs/build_robustness.log",
        params:
            study=STUDY_DICT,
            kinds=ERROR_KINDS,
        script:
            "../scripts/report_robustness.py"


rule verify_study:
    input:
        expected=expected_files,
        train=lambda wc: datasets(wc.scale, "train"),
        test=lambda wc: datasets(wc.scale, "test"),
        histories=history_files,
        csv=f"{ROOT}/report/metrics.csv",
        metrics=metric_files,
        benchmarks=benchmark_files,
        # the cells at error levels (none without an errors section)
        error_train=lambda wc: datasets(wc.scale, "train", ERROR_LEVELS),
        error_test=lambda wc: datasets(wc.scale, "test", ERROR_LEVELS),
        error_histories=error_history_files,
        error_metrics=error_metric_files,
    output:
        report=f"{ROOT}/report/verification_report.json",
        inventory=f"{ROOT}/report/artifact_inventory.txt",
        provenance=f"{ROOT}/report/provenance.json",
    log:
        f"{ROOT}/logs/verify_study.log",
    benchmark:
        f"{ROOT}/benchmarks/verify_study.tsv"
    params:
        study=STUDY_DICT,
        scale="{scale}",
        root=lambda wc: root(wc.scale),
        # written after the inventory: the summary states the verdict, assert_verified acts on it
        exclude=[
            "report/summary.md",
            "report/summary.html",
            "report/verdict.html",
            "logs/build_summary.log",
            "report/verified.ok",
            "logs/assert_verified.log",
        ],
    script:
        "../scripts/verify_study.py"


rule build_summary:
    input:
        metrics=metric_files,
        report=f"{ROOT}/report/verification_report.json",
        robustness=lambda wc: (
            [f"{root(wc.scale)}/report/robustness.csv"] if ERROR_KINDS else []
        ),
    output:
        verdict=report(
            f"{ROOT}/report/verdict.html",
            caption="../report/verdict.rst",
            category="1. Verdict and answer",
            labels={"page": "verdict, answer and checks"},
        ),
        html=report(
            f"{ROOT}/report/summary.html",
            caption="../report/summary.rst",
            category="2. Tables",
            labels={"table": "summary: every table"},
        ),
        md=report(
            f"{ROOT}/report/summary.md",
            caption="../report/summary.rst",
            category="6. Data files (download)",
            labels={"file": "summary.md (the summary as Markdown)"},
        ),
    log:
        f"{ROOT}/logs/build_summary.log",
    params:
        study=STUDY_DICT,
        scale="{scale}",
    script:
        "../scripts/report_summary.py"


rule assert_verified:
    input:
        report=f"{ROOT}/report/verification_report.json",
        # written first, so that a failed verification is shown in the summary too
        summary=f"{ROOT}/report/summary.md",
    output:
        ok=f"{ROOT}/report/verified.ok",
    log:
        f"{ROOT}/logs/assert_verified.log",
    script:
        "../scripts/assert_verified.py"


# what the phase targets want after the verification: the verdict, the summary, verified.ok
AFTER_VERIFICATION = ["verdict.html", "summary.html", "summary.md", "verified.ok"]


rule phase_g_scaled:
    input:
        expand(
            f"{ROOT}/report/{{f}}",
            study=STUDY_NAME,
            scale="scaled",
            f=AFTER_VERIFICATION,
        ),
        verified_inputs("scaled"),


rule phase_g_full:
    input:
        expand(
            f"{ROOT}/report/{{f}}",
            study=STUDY_NAME,
            scale="full",
            f=AFTER_VERIFICATION,
        ),
        verified_inputs("full"),
