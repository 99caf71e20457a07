rule predict:
    """Trie-constrained beam search over the whole catalogue with an LM folder ({lm}:
    sft), valid and test rows."""
    input:
        model="results/{dataset}/seed-{seed}/{lm}",
        item_table="results/{dataset}/data/items.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        sid="results/{dataset}/seed-{seed}/sid.json",
        code=code("sidrec.cli.predict"),
    output:
        valid="results/{dataset}/seed-{seed}/predictions/{lm}_valid.parquet",
        test="results/{dataset}/seed-{seed}/predictions/{lm}_test.parquet",
    wildcard_constraints:
        lm="|".join(LMS),
    params:
        lineage=lineage("predict"),
        hp=decode_params,
        launch=launcher(),
        device=device,
    # On CPU (gpu=0) torch uses the job's threads (Snakemake sets OMP_NUM_THREADS).
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/predict_{lm}.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/predict_{lm}.tsv"
    shell:
        "{params.launch} sidrec.cli.predict --device {params.device} --model {input.model:q}"
        " --items {input.item_table:q} --sid {input.sid:q} --valid {input.valid:q} --test {input.test:q}"
        " --out-valid {output.valid:q} --out-test {output.test:q} --params {params.hp:q} > {log:q} 2>&1"


rule metrics:
    """HR@K / NDCG@K of every model's predictions, long format."""
    input:
        predictions=metrics_predictions,
        item_table="results/{dataset}/data/items.parquet",
        code=code("workflow/scripts/metrics.py"),
    output:
        report("results/{dataset}/seed-{seed}/metrics.tsv", caption="../workflow/report/metrics.rst", category="Results",
               subcategory="{dataset}, seed {seed}"),
    params:
        lineage=lineage("metrics"),
        ks=config["evaluate"]["ks"],
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/metrics.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/metrics.tsv"
    script:
        "../workflow/scripts/metrics.py"
