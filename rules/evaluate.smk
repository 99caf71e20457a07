rule predict_sft:
    """Trie-constrained beam search over the whole catalogue, valid and test rows."""
    input:
        model="results/{dataset}/sft",
        item_table="results/{dataset}/data/items.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        sid="results/{dataset}/sid.json",
        code=code("decode/trie.py", "decode/beam.py", "lm/prompts.py", "recommend.py", "evaluate.py",
                  "cli/predict.py"),
    output:
        valid="results/{dataset}/predictions/sft_valid.parquet",
        test="results/{dataset}/predictions/sft_test.parquet",
    params:
        hp=as_json(config["evaluate"]),
        launch=launcher("single_gpu.yaml"),
    # On CPU (gpu=0) torch uses the job's threads (Snakemake sets OMP_NUM_THREADS).
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/predict_sft.log",
    benchmark:
        "results/{dataset}/benchmarks/predict_sft.tsv"
    shell:
        "{params.launch} sidrec.cli.predict --model {input.model:q} --data {input.item_table:q}"
        " --sid {input.sid:q} --out-valid {output.valid:q} --out-test {output.test:q}"
        " --params {params.hp:q} > {log:q} 2>&1"


rule metrics:
    """HR@K / NDCG@K of every model's predictions, long format."""
    input:
        predictions=expand("results/{{dataset}}/predictions/{model}_{split}.parquet",
                           model=MODELS, split=SPLITS),
        code=code("metrics.py"),
    output:
        "results/{dataset}/metrics.tsv",
    params:
        ks=config["evaluate"]["ks"],
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/metrics.log",
    benchmark:
        "results/{dataset}/benchmarks/metrics.tsv"
    script:
        "../workflow/scripts/metrics.py"
