# Phase E (PINN, adapted PINN) and Phase F (supervised baseline): one job per arm x cell trains the
# network and reconstructs the cell's test split with it (inference, phase synchronisation,
# stitching), so TensorFlow starts and traces once per arm and cell. The reconstruction's wall time
# is its own (inference + stitching; model loading excluded), recorded in the recon file.


rule train_pinn:
    input:
        train=f"{ROOT}/data/{CELL}/train.h5",
        test=f"{ROOT}/data/{CELL}/test.h5",
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
                "overlap": "{overlap}{level}",
                "replicate": "{replicate}",
            },
        ),
        recon=f"{ROOT}/recon/pinn_g{{gridsize}}/{CELL}.h5",
    log:
        f"{ROOT}/logs/train_pinn/pinn_g{{gridsize}}/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/train_pinn/pinn_g{{gridsize}}/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=network_mem_mb(2500, 24000),
        gpu=job_gpu,
        runtime=network_runtime(780),
    params:
        study=STUDY_DICT,
        scale="{scale}",
        arm="pinn_g{gridsize}",
        overlap="{overlap}",
    script:
        "../scripts/train.py"


rule train_baseline:
    input:
        train=f"{ROOT}/data/{CELL}/train.h5",
        test=f"{ROOT}/data/{CELL}/test.h5",
    output:
        model=f"{ROOT}/models/baseline/{CELL}/model.keras",
        bundle=f"{ROOT}/models/baseline/{CELL}/bundle.json",
        history=f"{ROOT}/models/baseline/{CELL}/history.csv",
        curve=report(
            f"{ROOT}/models/baseline/{CELL}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="baseline",
            labels={
                "arm": "baseline",
                "dose": "{dose}",
                "overlap": "{overlap}{level}",
                "replicate": "{replicate}",
            },
        ),
        recon=f"{ROOT}/recon/baseline/{CELL}.h5",
    log:
        f"{ROOT}/logs/train_baseline/baseline/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/train_baseline/baseline/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=network_mem_mb(2500, 24000),
        gpu=job_gpu,
        runtime=network_runtime(780),
    params:
        study=STUDY_DICT,
        scale="{scale}",
        arm="baseline",
        overlap="{overlap}",
    script:
        "../scripts/train.py"


rule adapt_pinn:
    input:
        model=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/model.keras",
        bundle=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/bundle.json",
        test=f"{ROOT}/data/{CELL}/test.h5",
    output:
        model=f"{ROOT}/models/adapted_g{{gridsize}}/{CELL}/model.keras",
        bundle=f"{ROOT}/models/adapted_g{{gridsize}}/{CELL}/bundle.json",
        history=f"{ROOT}/models/adapted_g{{gridsize}}/{CELL}/history.csv",
        curve=report(
            f"{ROOT}/models/adapted_g{{gridsize}}/{CELL}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="adapted_g{gridsize}",
            labels={
                "arm": "adapted_g{gridsize}",
                "dose": "{dose}",
                "overlap": "{overlap}{level}",
                "replicate": "{replicate}",
            },
        ),
        recon=f"{ROOT}/recon/adapted_g{{gridsize}}/{CELL}.h5",
    log:
        f"{ROOT}/logs/adapt_pinn/adapted_g{{gridsize}}/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/adapt_pinn/adapted_g{{gridsize}}/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=network_mem_mb(2500, 24000),
        gpu=job_gpu,
        runtime=network_runtime(240, adapt=True),
    params:
        study=STUDY_DICT,
        scale="{scale}",
        overlap="{overlap}",
        source_arm="pinn_g{gridsize}",
    script:
        "../scripts/adapt.py"
