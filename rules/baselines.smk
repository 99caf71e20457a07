rule popularity:
    """Most-popular baseline: training-target counts, the same list for every row."""
    input:
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        item_table="results/{dataset}/data/items.parquet",
        code=code("baselines/popularity.py"),
    output:
        valid="results/{dataset}/predictions/popularity_valid.parquet",
        test="results/{dataset}/predictions/popularity_test.parquet",
    params:
        k=max(config["evaluate"]["ks"]),
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/popularity.log",
    benchmark:
        "results/{dataset}/benchmarks/popularity.tsv"
    script:
        "../workflow/scripts/popularity.py"


rule sasrec:
    """SASRec: a compact self-attentive sequential recommender, full softmax over items."""
    input:
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        item_table="results/{dataset}/data/items.parquet",
        code=code("baselines/sasrec.py"),
    output:
        model="results/{dataset}/sasrec.ckpt",
        valid="results/{dataset}/predictions/sasrec_valid.parquet",
        test="results/{dataset}/predictions/sasrec_test.parquet",
    params:
        hp=config["baselines"]["sasrec"],
        max_len=max_history,
        k=max(config["evaluate"]["ks"]),
    threads: workflow.cores
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/sasrec.log",
    benchmark:
        "results/{dataset}/benchmarks/sasrec.tsv"
    script:
        "../workflow/scripts/sasrec.py"
