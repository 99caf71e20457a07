"""Rule `base_tiny`: a from-scratch decoder + a tokenizer trained on the dataset's text."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.data.tables import read_items
from sidrec.lm.base import build_tiny
from sidrec.lm.prompts import tokenizer_corpus

items = read_items(snakemake.input.item_table)
build_tiny(snakemake.output[0], tokenizer_corpus(items["title"].tolist()), dict(snakemake.params.hp))
