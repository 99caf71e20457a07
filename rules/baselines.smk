rule popularity:
    """Most-popular baseline: training-target counts, the same list for every row."""
    input:
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        item_table="results/{dataset}/data/items.parquet",
        code=code("workflow/scripts/popularity.py"),
    output:
        valid="results/{dataset}/predictions/popularity_valid.parquet",
        test="results/{dataset}/predictions/popularity_test.parquet",
    params:
        lineage=lineage("popularity"),
        k=top_k(),
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
        code=code("sidrec.cli.sasrec"),
    output:
        model="results/{dataset}/sasrec.ckpt",
        valid="results/{dataset}/predictions/sasrec_valid.parquet",
        test="results/{dataset}/predictions/sasrec_test.parquet",
    params:
        lineage=lineage("sasrec"),
        hp=sasrec_params,
        max_len=max_history,
        k=top_k(),
        # One process at most: SASRec trains on one device.
        launch=launcher(),
        device=device,
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/sasrec.log",
    benchmark:
        "results/{dataset}/benchmarks/sasrec.tsv"
    shell:
        "{params.launch} sidrec.cli.sasrec --device {params.device} --threads {threads}"
        " --items {input.item_table:q} --train {input.train:q} --valid {input.valid:q} --test {input.test:q}"
        " --model-out {output.model:q} --out-valid {output.valid:q} --out-test {output.test:q}"
        " --max-len {params.max_len} --k {params.k} --params {params.hp:q} > {log:q} 2>&1"
