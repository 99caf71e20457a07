"""Rule `quantize`: embeddings -> RQ-VAE (or RQ-KMeans) checkpoint."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.tokenize import fit_quantizer

fit_quantizer(snakemake.input.embeddings, snakemake.output[0], dict(snakemake.params.hp))
