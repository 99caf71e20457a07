"""Rule `sid`: quantiser codes -> unique semantic IDs + metadata."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.sid import build_sids

build_sids(snakemake.input.quantizer, snakemake.input.embeddings, snakemake.output.sid,
           snakemake.output.meta, codebook_size=snakemake.params.codebook_size)
