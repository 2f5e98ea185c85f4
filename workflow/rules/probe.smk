# The probe the arms are told, refined on each cell's train split (data/probe_source:
# train_refined in the study; docs/own-data.md). Simulation or import writes the given splits to
# data/<cell>/given/; refine_train_probe reads the given *train* split only and writes the refined
# probe; apply_refined_probe writes data/<cell>/{train,test}.h5 with it as their nominal /probe
# (the given probe kept as /given_probe), so every later rule reads it. Nothing here is defined
# for a study with the given probe.


if REFINED_PROBE:

    rule refine_train_probe:
        input:
            # the train split only: the test split never informs the probe
            train=f"{ROOT}/{GIVEN_DATA}/train.h5",
        output:
            probe=f"{ROOT}/data/{CELL}/probe/refined_probe.h5",
            figure=report(
                f"{ROOT}/data/{CELL}/probe/refined_probe.png",
                caption="../report/refined_probe.rst",
                category="Datasets",
                labels={
                    "dose": "{dose}",
                    "overlap": "{overlap}{level}",
                    "replicate": "{replicate}",
                    "scale": "{scale}",
                    "figure": "probe refined on the train split",
                },
            ),
        log:
            f"{ROOT}/logs/refine_train_probe/{CELL}.log",
        benchmark:
            f"{ROOT}/benchmarks/refine_train_probe/{CELL}.tsv"
        threads: job_threads
        # no gpu request: a CPU job on a cluster's default partition (pty-chi uses a GPU when
        # the node has one)
        resources:
            mem_mb=mem_mb(2500, 32000),
            runtime=runtime_min(10, 120),
        params:
            study=STUDY_DICT,
        script:
            "../scripts/refine_probe.py"

    rule apply_refined_probe:
        input:
            probe=f"{ROOT}/data/{CELL}/probe/refined_probe.h5",
            train=f"{ROOT}/{GIVEN_DATA}/train.h5",
            test=f"{ROOT}/{GIVEN_DATA}/test.h5",
        output:
            train=f"{ROOT}/data/{CELL}/train.h5",
            test=f"{ROOT}/data/{CELL}/test.h5",
        log:
            f"{ROOT}/logs/apply_refined_probe/{CELL}.log",
        threads: 1
        resources:
            mem_mb=mem_mb(1000, 4000),
            runtime=runtime_min(5, 30),
        script:
            "../scripts/apply_probe.py"
