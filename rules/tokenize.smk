rule embed:
    """Item text -> float32 [n_items, d]; across GPUs under accelerate when given some."""
    input:
        item_table="results/{dataset}/data/items.parquet",
        code=code("sidrec.cli.embed"),
    output:
        "results/{dataset}/embeddings.npy",
    params:
        lineage=lineage("embed"),
        hp=as_json(config["encoder"]),
        launch=launcher("multi_gpu.yaml"),
        device=device,
    # On CPU (gpu=0) torch uses the job's threads (Snakemake sets OMP_NUM_THREADS).
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/embed.log",
    benchmark:
        "results/{dataset}/benchmarks/embed.tsv"
    shell:
        "{params.launch} sidrec.cli.embed --device {params.device} --items {input.item_table:q}"
        " --out {output:q} --params {params.hp:q} > {log:q} 2>&1"


rule item_vectors:
    """Text vectors + the selected SASRec's item embeddings -> what the quantiser reads
    when quantizer.input is collaborative or both (with text, no job: embeddings.npy)."""
    input:
        embeddings="results/{dataset}/embeddings.npy",
        sasrec="results/{dataset}/seed-{seed}/sasrec.ckpt",
        code=code("workflow/scripts/item_vectors.py"),
    output:
        "results/{dataset}/seed-{seed}/item_vectors.npy",
    params:
        lineage=lineage("item_vectors"),
        kind=config["quantizer"]["input"],
        collaborative_weight=config["quantizer"]["collaborative_weight"],
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/item_vectors.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/item_vectors.tsv"
    script:
        "../workflow/scripts/item_vectors.py"


rule quantize:
    """Item vectors -> residual quantiser (RQ-VAE, or RQ-KMeans by config)."""
    input:
        embeddings=quantizer_vectors,
        code=code("sidrec.cli.quantize"),
    output:
        "results/{dataset}/seed-{seed}/rqvae.ckpt",
    params:
        lineage=lineage("quantize"),
        hp=quantizer_params,
        # One process at most: the full-batch RQ-VAE is one GPU's work.
        launch=launcher(),
        device=device,
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/quantize.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/quantize.tsv"
    shell:
        "{params.launch} sidrec.cli.quantize --device {params.device} --embeddings {input.embeddings:q}"
        " --out {output:q} --params {params.hp:q} > {log:q} 2>&1"


rule sid:
    """Codes -> one unique semantic ID per item (re-spread, then an extra level if needed)."""
    input:
        embeddings=quantizer_vectors,
        quantizer="results/{dataset}/seed-{seed}/rqvae.ckpt",
        code=code("workflow/scripts/sid.py"),
    output:
        sid="results/{dataset}/seed-{seed}/sid.json",
        meta="results/{dataset}/seed-{seed}/sid.meta.json",
    params:
        lineage=lineage("sid"),
        codebook_size=config["quantizer"]["codebook_size"],
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/sid.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/sid.tsv"
    script:
        "../workflow/scripts/sid.py"
