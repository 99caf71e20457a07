"""sidrec: generative recommendation with semantic IDs.

Layers (each imports only the ones below it):
  data/     item and sample tables, split rules, one reader per source
  embed     item text -> float32 matrix
  quantize/ embeddings -> codes (RQ-VAE, RQ-KMeans)
  sid       codes -> unique semantic IDs and their tokens
  lm/       base models, the one prompt builder, SID vocabulary, run scaffolding, SFT
  decode/   catalogue trie and constrained beam search
  recommend histories -> top-K items (Recommender.from_artifacts)
  metrics, evaluate, baselines/
  stages/   one path-in/path-out function per pipeline rule
  cli/      entry points of the GPU-capable stages (python -m / accelerate launch -m)
No module here knows Snakemake; workflow/scripts/ adapts the `snakemake` object.
"""
__version__ = "0.1.0"
