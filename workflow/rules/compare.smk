# Phase G, per arm x cell: the same alignment and metrics for every arm.


rule evaluate_arm:
    input:
        recon=f"{ROOT}/recon/{{arm}}/{CELL}.h5",
        test=f"{ROOT}/data/{CELL}/test.h5",
        halves=half_recons,
    output:
        metrics=f"{ROOT}/eval/{{arm}}/{CELL}/metrics.json",
        aligned=f"{ROOT}/eval/{{arm}}/{CELL}/aligned.h5",
    log:
        f"{ROOT}/logs/evaluate_arm/{{arm}}/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/evaluate_arm/{{arm}}/{CELL}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 8000),
        runtime=runtime_min(5, 30),
    params:
        study=STUDY_DICT,
    script:
        "../scripts/evaluate_arm.py"
