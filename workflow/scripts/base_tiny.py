"""Rule `base_tiny`: a from-scratch decoder + a tokenizer trained on the dataset's text."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.base_tiny import build_tiny_base

build_tiny_base(snakemake.input.item_table, snakemake.output[0], snakemake.params.hp)
