rule embed:
    """Item text -> float32 [n_items, d]; across GPUs under accelerate when given some."""
    input:
        item_table="results/{dataset}/data/items.parquet",
        code=code("embed.py", "cli/embed.py"),
    output:
        "results/{dataset}/embeddings.npy",
    params:
        hp=as_json(config["encoder"]),
        launch=launcher("multi_gpu.yaml"),
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
        "{params.launch} sidrec.cli.embed --items {input.item_table:q} --out {output:q}"
        " --params {params.hp:q} > {log:q} 2>&1"


rule quantize:
    """Embeddings -> residual quantiser (RQ-VAE, or RQ-KMeans by config)."""
    input:
        embeddings="results/{dataset}/embeddings.npy",
        code=code("tokenize.py", "quantize/codes.py", "quantize/kmeans.py", "quantize/rqvae.py", "quantize/rqkmeans.py"),
    output:
        "results/{dataset}/rqvae.ckpt",
    params:
        hp=config["quantizer"],
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/quantize.log",
    benchmark:
        "results/{dataset}/benchmarks/quantize.tsv"
    script:
        "../workflow/scripts/quantize.py"


rule sid:
    """Codes -> one unique semantic ID per item (re-spread, then an extra level if needed)."""
    input:
        embeddings="results/{dataset}/embeddings.npy",
        quantizer="results/{dataset}/rqvae.ckpt",
        code=code("tokenize.py", "sid.py"),
    output:
        sid="results/{dataset}/sid.json",
        meta="results/{dataset}/sid.meta.json",
    params:
        codebook_size=config["quantizer"]["codebook_size"],
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/sid.log",
    benchmark:
        "results/{dataset}/benchmarks/sid.tsv"
    script:
        "../workflow/scripts/sid.py"
