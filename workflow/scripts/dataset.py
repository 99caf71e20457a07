"""Rule `dataset`: read the configured source, write the four tables."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.dataset import build_dataset

build_dataset(snakemake.params.spec, items=snakemake.output.item_table, train=snakemake.output.train,
              valid=snakemake.output.valid, test=snakemake.output.test)
