rule dataset:
    """One reader per source -> the four tables every later stage reads."""
    input:
        source=dataset_source_files,
        code=code("workflow/scripts/dataset.py"),
    output:
        item_table="results/{dataset}/data/items.parquet",
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
    params:
        lineage=lineage("dataset"),
        spec=dataset_spec,
    conda:
        "../envs/sidrec.yaml"
    log:
        "results/{dataset}/logs/dataset.log",
    benchmark:
        "results/{dataset}/benchmarks/dataset.tsv"
    script:
        "../workflow/scripts/dataset.py"
