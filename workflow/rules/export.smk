# Exports on request (not part of phase_g): every split and every reconstruction as PtychoPINN
# NPZ and as ptychodus product + diffraction files (the latter needs the interop extra).
#   snakemake export_scaled            both formats
#   snakemake export_npz_scaled        PtychoPINN NPZ only (no extra package needed)
#   snakemake export_ptychodus_scaled  ptychodus files only


rule export_split_npz:
    input:
        dataset=f"{ROOT}/data/{CELL}/{{split}}.h5",
    output:
        npz=f"{ROOT}/export/{CELL}/data/{{split}}.npz",
    log:
        f"{ROOT}/logs/export/{CELL}/{{split}}_npz.log",
    wildcard_constraints:
        split="train|test",
    params:
        study=STUDY_DICT,
    script:
        "../scripts/export_npz.py"


rule export_recon_npz:
    input:
        recon=f"{ROOT}/recon/{{arm}}/{CELL}.h5",
        dataset=f"{ROOT}/data/{CELL}/test.h5",
    output:
        npz=f"{ROOT}/export/{CELL}/recon/{{arm}}.npz",
    log:
        f"{ROOT}/logs/export/{CELL}/{{arm}}_npz.log",
    params:
        study=STUDY_DICT,
    script:
        "../scripts/export_npz.py"


rule export_split_ptychodus:
    input:
        dataset=f"{ROOT}/data/{CELL}/{{split}}.h5",
    output:
        diffraction=f"{ROOT}/export/{CELL}/data/{{split}}/diffraction.h5",
        product=f"{ROOT}/export/{CELL}/data/{{split}}/product.h5",
    log:
        f"{ROOT}/logs/export/{CELL}/{{split}}_ptychodus.log",
    wildcard_constraints:
        split="train|test",
    params:
        study=STUDY_DICT,
    script:
        "../scripts/export_ptychodus.py"


rule export_recon_ptychodus:
    input:
        recon=f"{ROOT}/recon/{{arm}}/{CELL}.h5",
        dataset=f"{ROOT}/data/{CELL}/test.h5",
        history=trained_history,
    output:
        product=f"{ROOT}/export/{CELL}/recon/{{arm}}/product.h5",
    log:
        f"{ROOT}/logs/export/{CELL}/{{arm}}_ptychodus.log",
    params:
        study=STUDY_DICT,
    script:
        "../scripts/export_ptychodus.py"


rule export_npz_scaled:
    input:
        export_outputs("scaled", "npz"),


rule export_ptychodus_scaled:
    input:
        export_outputs("scaled", "ptychodus"),


rule export_scaled:
    input:
        rules.export_npz_scaled.input,
        rules.export_ptychodus_scaled.input,


rule export_npz_full:
    input:
        export_outputs("full", "npz"),


rule export_ptychodus_full:
    input:
        export_outputs("full", "ptychodus"),


rule export_full:
    input:
        rules.export_npz_full.input,
        rules.export_ptychodus_full.input,
