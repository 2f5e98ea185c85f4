# Studies on external data (data/source: external in the study): import instead of simulation,
# and, without ground truth, the half-scan reconstructions and grids of the ground-truth-free
# evaluation. Nothing here is defined for a simulated study.


if EXTERNAL:

    ruleorder: import_dataset > simulate_dataset

    rule import_dataset:
        input:
            external_files,
        output:
            train=f"{ROOT}/{GIVEN_DATA}/train.h5",
            test=f"{ROOT}/{GIVEN_DATA}/test.h5",
            summary=f"{ROOT}/data/{CELL}/summary.json",
            figure=report(
                f"{ROOT}/data/{CELL}/summary.png",
                caption="../report/dataset.rst",
                category="Datasets",
                labels={"dose": "{dose}", "overlap": "{overlap}", "scale": "{scale}"},
            ),
        log:
            f"{ROOT}/logs/import_dataset/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/import_dataset/{CELL}.tsv"
        threads: 1
        resources:
            mem_mb=mem_mb(1000, 4000),
            runtime=runtime_min(5, 30),
        params:
            study=STUDY_DICT,
            scale="{scale}",
        script:
            "../scripts/simulate_dataset.py"


if not GROUND_TRUTH:

    rule split_test_halves:
        input:
            test=f"{ROOT}/data/{CELL}/test.h5",
        output:
            half1=f"{ROOT}/data/{CELL}/test_half1.h5",
            half2=f"{ROOT}/data/{CELL}/test_half2.h5",
        log:
            f"{ROOT}/logs/split_test_halves/{CELL}.log",
        threads: 1
        resources:
            mem_mb=mem_mb(1000, 4000),
        script:
            "../scripts/split_halves.py"

    rule reconstruct_halves_network:
        input:
            unpack(half_model),
            half1=f"{ROOT}/data/{CELL}/test_half1.h5",
            half2=f"{ROOT}/data/{CELL}/test_half2.h5",
        output:
            half1=f"{ROOT}/recon_halves/{{net}}/{CELL}_half1.h5",
            half2=f"{ROOT}/recon_halves/{{net}}/{CELL}_half2.h5",
        log:
            f"{ROOT}/logs/reconstruct_halves/{{net}}/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/reconstruct_halves/{{net}}/{CELL}.tsv"
        wildcard_constraints:
            net="|".join(TRAINED_ARMS) or "(?!)",
        threads: job_threads
        resources:
            mem_mb=mem_mb(2000, 16000),
            gpu=job_gpu,
            runtime=runtime_min(5, 60),
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            arm="{net}",
        script:
            "../scripts/reconstruct_halves.py"

    rule reconstruct_halves_iterative:
        input:
            half1=f"{ROOT}/data/{CELL}/test_half1.h5",
            half2=f"{ROOT}/data/{CELL}/test_half2.h5",
        output:
            half1=f"{ROOT}/recon_halves/iterative/{CELL}_half1.h5",
            half2=f"{ROOT}/recon_halves/iterative/{CELL}_half2.h5",
        log:
            f"{ROOT}/logs/reconstruct_halves/iterative/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/reconstruct_halves/iterative/{CELL}.tsv"
        threads: job_threads
        resources:
            mem_mb=mem_mb(2500, 32000),
            gpu=job_gpu,
            runtime=runtime_min(10, 240),
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            arm="iterative",
        script:
            "../scripts/reconstruct_halves.py"

    rule build_gt_free_grids:
        input:
            csv=f"{ROOT}/report/metrics.csv",
        output:
            residual=report(
                f"{ROOT}/report/figures/residual_grid.png",
                caption="../report/gt_free.rst",
                category="Grids",
                labels={"figure": "data residual grid (no ground truth)"},
            ),
            frc=report(
                f"{ROOT}/report/figures/frc_halves_grid.png",
                caption="../report/gt_free.rst",
                category="Grids",
                labels={"figure": "half-scan FRC grid (no ground truth)"},
            ),
        log:
            f"{ROOT}/logs/build_gt_free_grids.log",
        params:
            study=STUDY_DICT,
        script:
            "../scripts/report_gt_free.py"
