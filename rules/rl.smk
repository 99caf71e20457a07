rule rl:
    """GRPO after SFT: rollouts over the catalogue trie, rewards by each row's own
    target, the step with the best valid NDCG@k kept (the SFT model when none beats it)."""
    input:
        sft="results/{dataset}/seed-{seed}/sft",
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        item_table="results/{dataset}/data/items.parquet",
        sid="results/{dataset}/seed-{seed}/sid.json",
        embeddings=rl_vectors,  # the similarity reward's item vectors (rl.similarity_vectors)
        code=code("sidrec.cli.rl"),
    output:
        directory("results/{dataset}/seed-{seed}/rl"),
    params:
        lineage=lineage("rl"),
        hp=rl_params,
        scratch="results/{dataset}/seed-{seed}/.scratch/rl",
        launch=launcher("zero2.yaml"),
        device=device,
    # On CPU (gpu=0) torch uses the job's threads (Snakemake sets OMP_NUM_THREADS).
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/rl.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/rl.tsv"
    shell:
        "{params.launch} sidrec.cli.rl --device {params.device} --sft {input.sft:q}"
        " --train {input.train:q} --valid {input.valid:q} --items {input.item_table:q} --sid {input.sid:q}"
        " --embeddings {input.embeddings:q} --out {output:q} --scratch {params.scratch:q} --params {params.hp:q} > {log:q} 2>&1"
