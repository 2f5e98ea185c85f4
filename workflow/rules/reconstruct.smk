# The solver reconstructions of every cell's test split: pty-chi LSQML from a flat start
# (iterative) and from a network's reconstruction (hybrid). The network arms' reconstructions are
# written by their training jobs (train.smk).


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
        runtime=runtime_min(10, 240),
    params:
        study=STUDY_DICT,
        scale="{scale}",
        overlap="{overlap}",
    script:
        "../scripts/reconstruct_iterative.py"


if HYBRID_START:

    rule reconstruct_hybrid:
        input:
            test=f"{ROOT}/data/{CELL}/test.h5",
            start=f"{ROOT}/recon/{HYBRID_START}/{CELL}.h5",
        output:
            recon=f"{ROOT}/recon/hybrid/{CELL}.h5",
        log:
            f"{ROOT}/logs/reconstruct/hybrid/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/reconstruct/hybrid/{CELL}.tsv"
        threads: job_threads
        resources:
            mem_mb=mem_mb(2500, 32000),
            gpu=job_gpu,
            runtime=runtime_min(10, 240),
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            start_arm=HYBRID_START,
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
        recon_outputs(
            "scaled", [a for a in ARMS if a in ("baseline", "iterative", "hybrid")]
        ),
        variant_model_outputs("scaled"),
        recon_outputs("scaled", VARIANTS),


rule phase_f_full:
    input:
        model_outputs("full", [a for a in ARMS if a == "baseline"]),
        recon_outputs(
            "full", [a for a in ARMS if a in ("baseline", "iterative", "hybrid")]
        ),
        variant_model_outputs("full"),
        recon_outputs("full", VARIANTS),
