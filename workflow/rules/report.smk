# Phase G, study level: tables, grids, figures, verification, inventory, provenance.


rule build_metrics_table:
    input:
        metrics=metric_files,
    output:
        csv=report(
            f"{ROOT}/report/metrics.csv",
            caption="../report/metrics.rst",
            category="Tables",
            labels={"table": "metrics (tidy CSV)"},
        ),
        md=report(
            f"{ROOT}/report/summary.md",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "summary (Markdown)"},
        ),
        quality_time=report(
            f"{ROOT}/report/quality_time.csv",
            caption="../report/quality_time_table.rst",
            category="Tables",
            labels={"table": "quality against time (CSV)"},
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
            category="Grids",
            labels={"figure": "SSIM grid"},
        ),
        ms_ssim_grid=report(
            f"{ROOT}/report/figures/ms_ssim_grid.png",
            caption="../report/ssim_grid.rst",
            category="Grids",
            labels={"figure": "MS-SSIM grid"},
        ),
        delta_grid=report(
            f"{ROOT}/report/figures/delta_grid.png",
            caption="../report/delta_grid.rst",
            category="Grids",
            labels={"figure": "SSIM differences"},
        ),
        metric_vs_dose=report(
            f"{ROOT}/report/figures/metric_vs_dose.png",
            caption="../report/metric_vs_dose.rst",
            category="Curves",
            labels={"figure": "metrics versus dose"},
        ),
        frc=report(
            f"{ROOT}/report/figures/frc.png",
            caption="../report/frc.rst",
            category="Curves",
            labels={"figure": "FRC curves"},
        ),
        losses=report(
            f"{ROOT}/report/figures/losses.png",
            caption="../report/loss.rst",
            category="Curves",
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
            category="Curves",
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
            category="Comparisons",
            labels={
                "dose": "{dose}",
                "overlap": "{overlap}",
                "replicate": "{replicate}",
            },
        ),
    log:
        f"{ROOT}/logs/plot_comparison/{CELL}.log",
    params:
        arms=ARMS,
        title=lambda wc: f"{STUDY_NAME} ({wc.scale}): dose {wc.dose} photons/exposure, {wc.overlap} overlap, replicate {wc.replicate}",
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
            category="Tables",
            labels={"table": "dose-resolution power-law fits (CSV)"},
        ),
        fluence=report(
            f"{ROOT}/report/figures/fluence.png",
            caption="../report/fluence.rst",
            category="Curves",
            labels={"figure": "SSIM versus fluence"},
        ),
        fits=report(
            f"{ROOT}/report/figures/dose_resolution.png",
            caption="../report/dose_resolution.rst",
            category="Curves",
            labels={"figure": "dose-resolution fits"},
        ),
    log:
        f"{ROOT}/logs/fit_dose_resolution.log",
    params:
        study=STUDY_DICT,
    script:
        "../scripts/report_fluence.py"


rule verify_study:
    input:
        expected=expected_files,
        train=lambda wc: datasets(wc.scale, "train"),
        test=lambda wc: datasets(wc.scale, "test"),
        histories=history_files,
        csv=f"{ROOT}/report/metrics.csv",
        metrics=metric_files,
        benchmarks=benchmark_files,
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
        # written after the inventory, by assert_verified
        exclude=["report/verified.ok", "logs/assert_verified.log"],
    script:
        "../scripts/verify_study.py"


rule assert_verified:
    input:
        report=f"{ROOT}/report/verification_report.json",
    output:
        ok=f"{ROOT}/report/verified.ok",
    log:
        f"{ROOT}/logs/assert_verified.log",
    script:
        "../scripts/assert_verified.py"


rule phase_g_scaled:
    input:
        expand(f"{ROOT}/report/verified.ok", study=STUDY_NAME, scale="scaled"),
        verified_inputs("scaled"),


rule phase_g_full:
    input:
        expand(f"{ROOT}/report/verified.ok", study=STUDY_NAME, scale="full"),
        verified_inputs("full"),
