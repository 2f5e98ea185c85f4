# Variants and plugins (variants: in the study; docs/add-your-method.md): one generic rule trains
# (when the arm trains) and reconstructs any variant into recon/<variant>/<cell>.h5, which the
# evaluation and report rules then score like every arm. The built-in arms keep their own rules;
# nothing here is defined for a study without variants.


if RECON_ONLY_VARIANTS:

    rule run_arm:
        input:
            unpack(variant_inputs),
        output:
            recon=f"{ROOT}/recon/{{variant}}/{CELL}.h5",
        log:
            f"{ROOT}/logs/run_arm/{{variant}}/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/run_arm/{{variant}}/{CELL}.tsv"
        wildcard_constraints:
            variant="|".join(RECON_ONLY_VARIANTS),
        threads: job_threads
        resources:
            mem_mb=mem_mb(2500, 32000),
            gpu=job_gpu,
            runtime=runtime_min(10, 240),
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            arm="{variant}",
            replicate="{replicate}",
        script:
            "../scripts/run_arm.py"


if TRAINING_VARIANTS:

    rule train_run_arm:
        input:
            unpack(variant_inputs),
        output:
            model=directory(f"{ROOT}/models/{{variant}}/{CELL}"),
            recon=f"{ROOT}/recon/{{variant}}/{CELL}.h5",
        log:
            f"{ROOT}/logs/run_arm/{{variant}}/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/run_arm/{{variant}}/{CELL}.tsv"
        wildcard_constraints:
            variant="|".join(TRAINING_VARIANTS),
        threads: job_threads
        resources:
            mem_mb=mem_mb(2500, 32000),
            gpu=job_gpu,
            runtime=runtime_min(20, 780),
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            arm="{variant}",
            replicate="{replicate}",
        script:
            "../scripts/run_arm.py"


if VARIANTS and not GROUND_TRUTH:

    rule run_arm_halves:
        input:
            unpack(variant_half_inputs),
        output:
            half1=f"{ROOT}/recon_halves/{{variant}}/{CELL}_half1.h5",
            half2=f"{ROOT}/recon_halves/{{variant}}/{CELL}_half2.h5",
        log:
            f"{ROOT}/logs/run_arm_halves/{{variant}}/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/run_arm_halves/{{variant}}/{CELL}.tsv"
        wildcard_constraints:
            variant="|".join(VARIANTS),
        threads: job_threads
        resources:
            mem_mb=mem_mb(2500, 32000),
            gpu=job_gpu,
            runtime=runtime_min(10, 240),
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            arm="{variant}",
            replicate="{replicate}",
        script:
            "../scripts/run_arm.py"
