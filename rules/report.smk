rule significance:
    """The LM with the better valid NDCG@10 against every other model on the test rows:
    paired per-row differences, bootstrap 95 % intervals, Wilcoxon p-values."""
    input:
        predictions=metrics_predictions,
        code=code("workflow/scripts/significance.py"),
    output:
        report("results/{dataset}/seed-{seed}/significance.tsv", caption="../workflow/report/significance_table.rst",
               category="Results", subcategory="{dataset}, seed {seed}"),
    params:
        lineage=lineage("significance"),
        lms=significance_lms(),
        k=significance_k(),
        n_boot=10000,
        seed=run_seed,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/significance.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/significance.tsv"
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
        report("results/{dataset}/seed-{seed}/provenance.json", caption="../workflow/report/provenance.rst",
               category="Provenance", subcategory="{dataset}, seed {seed}"),
    params:
        lineage=lineage("provenance"),
        config=run_config,
        seeds=run_seeds,
        models=model_files,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/provenance.log",
    script:
        "../workflow/scripts/provenance.py"


rule plots:
    """The report's figures, from the artifacts' own reports, metrics and benchmarks."""
    input:
        quantizer=quantizer_files,
        lms=lm_dirs,
        metrics="results/{dataset}/seed-{seed}/metrics.tsv",
        significance="results/{dataset}/seed-{seed}/significance.tsv",
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
        summary_table=report("results/{dataset}/seed-{seed}/report/summary.tsv", caption="../workflow/report/summary_table.rst",
                             category="Results", subcategory="{dataset}, seed {seed}"),
    params:
        lineage=lineage("plots"),
        k=significance_k(),
        seed=run_seed,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/plots.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/plots.tsv"
    script:
        "../workflow/scripts/plots.py"


rule summary:
    """Each metric's mean and std over the seeds, per dataset and model, with the per-seed
    values beside it (long format)."""
    input:
        metrics=metrics_files,
        code=code("workflow/scripts/summary.py"),
    output:
        summary=report("results/summary.tsv", caption="../workflow/report/seed_summary.rst", category="Results"),
        per_seed="results/summary_seeds.tsv",
    params:
        seeds=metrics_seeds,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/logs/summary.log",
    script:
        "../workflow/scripts/summary.py"
