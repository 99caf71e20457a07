rule significance:
    """The LM with the better valid NDCG@10 against every other model on the test rows:
    paired per-row differences, bootstrap 95 % intervals, Wilcoxon p-values."""
    input:
        predictions=metrics_predictions,
        code=code("workflow/scripts/significance.py"),
    output:
        report("results/{dataset}/significance.tsv", caption="../workflow/report/significance_table.rst",
               category="Results", subcategory="{dataset}"),
    params:
        lineage=lineage("significance"),
        lms=significance_lms(),
        k=significance_k(),
        n_boot=10000,
        seed=int(config["seed"]),
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/significance.log",
    benchmark:
        "results/{dataset}/benchmarks/significance.tsv"
    script:
        "../workflow/scripts/significance.py"


rule provenance:
    """How the dataset's results were made: git state, versions, config and its hash,
    seeds, devices, sha256 of every file from the source on, each job's times."""
    input:
        source=dataset_source_files,
        artifacts=provenance_artifacts,
        benchmarks=stage_benchmarks,
        code=code("workflow/scripts/provenance.py"),
    output:
        report("results/{dataset}/provenance.json", caption="../workflow/report/provenance.rst",
               category="Provenance", subcategory="{dataset}"),
    params:
        lineage=lineage("provenance"),
        config=as_json(config),
        seeds=run_seeds,
        models=model_files,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/provenance.log",
    script:
        "../workflow/scripts/provenance.py"


rule plots:
    """The report's figures, from the artifacts' own reports, metrics and benchmarks."""
    input:
        quantizer=quantizer_files,
        lms=lm_dirs,
        metrics="results/{dataset}/metrics.tsv",
        significance="results/{dataset}/significance.tsv",
        predictions=metrics_predictions,
        benchmarks=stage_benchmarks,
        code=code("workflow/scripts/plots.py"),
    output:
        quantizer_loss=plot_output("quantizer_loss.png"),
        code_usage=plot_output("code_usage.png"),
        sid_collisions=plot_output("sid_collisions.png"),
        sft_training=plot_output("sft_training.png"),
        rl_training=plot_output("rl_training.png"),
        metrics_at_k=plot_output("metrics_at_k.png"),
        summary=plot_output("summary.png"),
        significance=plot_output("significance.png"),
        stage_times=plot_output("stage_times.png"),
        summary_table=report("results/{dataset}/report/summary.tsv", caption="../workflow/report/summary_table.rst",
                             category="Results", subcategory="{dataset}"),
    params:
        lineage=lineage("plots"),
        k=significance_k(),
        seed=int(config["seed"]),
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/plots.log",
    benchmark:
        "results/{dataset}/benchmarks/plots.tsv"
    script:
        "../workflow/scripts/plots.py"
