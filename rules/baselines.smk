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
    """SASRec, one configuration of `baselines.sasrec_grid`: a compact self-attentive
    sequential recommender, full softmax over items, early stopping on valid."""
    input:
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        item_table="results/{dataset}/data/items.parquet",
        code=code("sidrec.cli.sasrec"),
    output:
        model="results/{dataset}/seed-{seed}/sasrec_grid/{candidate}.ckpt",
    params:
        lineage=lineage("sasrec"),
        hp=sasrec_candidate_params,
        max_len=max_history,
        # One process at most: SASRec trains on one device.
        launch=launcher(),
        device=device,
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/sasrec_grid/{candidate}.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/sasrec_grid/{candidate}.tsv"
    shell:
        "{params.launch} sidrec.cli.sasrec --device {params.device} --threads {threads}"
        " --items {input.item_table:q} --train {input.train:q} --valid {input.valid:q}"
        " --model-out {output.model:q} --max-len {params.max_len} --params {params.hp:q} > {log:q} 2>&1"


rule sasrec_select:
    """The SASRec configuration with the best valid NDCG@10 (test plays no part): its
    checkpoint, every candidate's valid score, and its ranked lists for valid and test."""
    input:
        candidates=sasrec_candidate_files,
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        item_table="results/{dataset}/data/items.parquet",
        code=code("workflow/scripts/sasrec_select.py"),
    output:
        model="results/{dataset}/seed-{seed}/sasrec.ckpt",
        selection="results/{dataset}/seed-{seed}/sasrec_selection.json",
        valid="results/{dataset}/seed-{seed}/predictions/sasrec_valid.parquet",
        test="results/{dataset}/seed-{seed}/predictions/sasrec_test.parquet",
    params:
        lineage=lineage("sasrec_select"),
        names=sasrec_candidate_names,
        k=top_k(),
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/sasrec_select.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/sasrec_select.tsv"
    script:
        "../workflow/scripts/sasrec_select.py"
