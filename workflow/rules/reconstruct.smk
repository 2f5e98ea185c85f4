# Reconstruction of every cell's test split: network inference + stitching, and pty-chi LSQML.


rule reconstruct_pinn:
    input:
        model=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/model.keras",
        bundle=f"{ROOT}/models/pinn_g{{gridsize}}/{CELL}/bundle.json",
        test=f"{ROOT}/data/{CELL}/test.h5",
    output:
        recon=f"{ROOT}/recon/pinn_g{{gridsize}}/{CELL}.h5",
    log:
        f"{ROOT}/logs/reconstruct/pinn_g{{gridsize}}/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/reconstruct/pinn_g{{gridsize}}/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=mem_mb(2000, 16000),
        gpu=job_gpu,
        runtime=lambda wildcards: 60 if is_full(wildcards) else 5,
    params:
        study=STUDY_DICT,
        scale="{scale}",
        overlap="{overlap}",
        arm="pinn_g{gridsize}",
    script:
        "../scripts/reconstruct_network.py"


rule reconstruct_baseline:
    input:
        model=f"{ROOT}/models/baseline/{CELL}/model.keras",
        bundle=f"{ROOT}/models/baseline/{CELL}/bundle.json",
        test=f"{ROOT}/data/{CELL}/test.h5",
    output:
        recon=f"{ROOT}/recon/baseline/{CELL}.h5",
    log:
        f"{ROOT}/logs/reconstruct/baseline/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/reconstruct/baseline/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=mem_mb(2000, 16000),
        gpu=job_gpu,
        runtime=lambda wildcards: 60 if is_full(wildcards) else 5,
    params:
        study=STUDY_DICT,
        scale="{scale}",
        overlap="{overlap}",
        arm="baseline",
    script:
        "../scripts/reconstruct_network.py"


rule reconstruct_iterative:
    input:
        test=f"{ROOT}/data/{CELL}/test.h5",
    output:
        recon=f"{ROOT}/recon/iterative/{CELL}.h5",
    log:
        f"{ROOT}/logs/reconstruct/iterative/{CELL}.log",
    benchmark:
        f"{ROOT}/benchmarks/reconstruct/iterative/{CELL}.tsv"
    threads: job_threads
    resources:
        mem_mb=mem_mb(2500, 32000),
        gpu=job_gpu,
        runtime=lambda wildcards: 240 if is_full(wildcards) else 10,
    params:
        study=STUDY_DICT,
        scale="{scale}",
        overlap="{overlap}",
    script:
        "../scripts/reconstruct_iterative.py"


rule phase_e_scaled:
    input:
        model_outputs("scaled", PINN_ARMS),
        recon_outputs("scaled", PINN_ARMS),


rule phase_e_full:
    input:
        model_outputs("full", PINN_ARMS),
        recon_outputs("full", PINN_ARMS),


rule phase_f_scaled:
    input:
        model_outputs("scaled", [a for a in ARMS if a == "baseline"]),
        recon_outputs("scaled", [a for a in ARMS if a in ("baseline", "iterative")]),


rule phase_f_full:
    input:
        model_outputs("full", [a for a in ARMS if a == "baseline"]),
        recon_outputs("full", [a for a in ARMS if a in ("baseline", "iterative")]),
