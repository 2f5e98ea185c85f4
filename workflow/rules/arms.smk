# Variants and plugins (variants: in the study; docs/add-your-method.md): one generic rule trains
# (when the arm trains) and reconstructs any variant into recon/<variant>/<cell>.h5, which the
# evaluation and report rules then score like every arm. The built-in arms keep their own rules;
# nothing here is defined for a study without variants.


def variant_inputs(wildcards):
    """The test split, and what the variant declares it reads: the train split (train, labels),
    the hybrid start arm's reconstruction (start)."""
    r, c = root(wildcards.scale), CELL.format(**wildcards)
    reads = VARIANT_INFO[wildcards.variant]["reads"]
    out = {"test": f"{r}/data/{c}/test.h5"}
    if "train" in reads or "labels" in reads:
        out["train"] = f"{r}/data/{c}/train.h5"
    if "start" in reads:
        out["start"] = f"{r}/recon/{HYBRID_START}/{c}.h5"
    return out


def variant_half_inputs(wildcards):
    """The two half scans (and a training variant's model directory)."""
    r, c = root(wildcards.scale), CELL.format(**wildcards)
    out = {h: f"{r}/data/{c}/test_{h}.h5" for h in ("half1", "half2")}
    if wildcards.variant in TRAINING_VARIANTS:
        out["model"] = f"{r}/models/{wildcards.variant}/{c}"
    return out


_RECON_ONLY = [v for v in VARIANTS if v not in TRAINING_VARIANTS]

if _RECON_ONLY:

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
            variant="|".join(_RECON_ONLY),
        threads: job_threads
        resources:
            mem_mb=mem_mb(2500, 32000),
            gpu=job_gpu,
            runtime=lambda wildcards: 240 if is_full(wildcards) else 10,
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
            runtime=lambda wildcards: 780 if is_full(wildcards) else 20,
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
            runtime=lambda wildcards: 240 if is_full(wildcards) else 10,
        params:
            study=STUDY_DICT,
            scale="{scale}",
            overlap="{overlap}",
            arm="{variant}",
            replicate="{replicate}",
        script:
            "../scripts/run_arm.py"
