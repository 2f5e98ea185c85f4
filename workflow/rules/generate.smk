# Phase C: simulated datasets, one job per dose x overlap (x error level) cell.


rule simulate_dataset:
    input:
        sources=study_inputs,
    output:
        train=f"{ROOT}/{GIVEN_DATA}/train.h5",
        test=f"{ROOT}/{GIVEN_DATA}/test.h5",
        summary=f"{ROOT}/data/{CELL}/summary.json",
        figure=report(
            f"{ROOT}/data/{CELL}/summary.png",
            caption="../report/dataset.rst",
            category="Datasets",
            labels={
                "dose": "{dose}",
                "overlap": "{overlap}{level}",
                "replicate": "{replicate}",
                "scale": "{scale}",
            },
        ),
    log:
        f"{ROOT}/logs/simulate_dataset/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/simulate_dataset/{CELL}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 4000),
        runtime=runtime_min(5, 30),
    params:
        study=STUDY_DICT,
        scale="{scale}",
        error_level=error_level,
    script:
        "../scripts/simulate_dataset.py"


rule phase_c_scaled:
    input:
        dataset_outputs("scaled"),


rule phase_c_full:
    input:
        dataset_outputs("full"),
