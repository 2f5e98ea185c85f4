# Phase E (PINN) and Phase F (supervised baseline) training, one job per arm x cell.


rule train_pinn:
    input:
        train=f"{ROOT}/data/{CELL}/train.h5",
    output:
        model=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/model.keras",
        bundle=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/bundle.json",
        history=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/history.csv",
        curve=report(
            f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="pinn_g{gridsize}",
            labels={
                "arm": "pinn_g{gridsize}",
                "dose": "{dose}",
                "overlap": "{overlap}",
            },
        ),
    log:
        f"{ROOT}/logs/train_pinn/pinn_g{{gridsize}}/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/train_pinn/pinn_g{{gridsize}}/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=mem_mb(2500, 24000),
        gpu=job_gpu,
        runtime=lambda wildcards: 720 if is_full(wildcards) else 15,
    params:
        study=STUDY_DICT,
        scale="{scale}",
        arm="pinn_g{gridsize}",
    script:
        "../scripts/train.py"


rule train_baseline:
    input:
        train=f"{ROOT}/data/{CELL}/train.h5",
    output:
        model=f"{ROOT}/models/baseline/{CELL}/model.keras",
        bundle=f"{ROOT}/models/baseline/{CELL}/bundle.json",
        history=f"{ROOT}/models/baseline/{CELL}/history.csv",
        curve=report(
            f"{ROOT}/models/baseline/{CELL}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="baseline",
            labels={"arm": "baseline", "dose": "{dose}", "overlap": "{overlap}"},
        ),
    log:
        f"{ROOT}/logs/train_baseline/baseline/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/train_baseline/baseline/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=mem_mb(2500, 24000),
        gpu=job_gpu,
        runtime=lambda wildcards: 720 if is_full(wildcards) else 15,
    params:
        study=STUDY_DICT,
        scale="{scale}",
        arm="baseline",
    script:
        "../scripts/train.py"
