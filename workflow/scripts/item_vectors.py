"""Rule `item_vectors`: text vectors + SASRec item embeddings -> the quantiser's input."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.item_vectors import build_item_vectors

build_item_vectors(snakemake.params.kind, snakemake.input.embeddings, snakemake.input.sasrec,
                   snakemake.output[0], collaborative_weight=snakemake.params.collaborative_weight)
