"""Rule `popularity`: count training targets, rank by count for every row."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.popularity import predict_popularity

predict_popularity(items=snakemake.input.item_table, train=snakemake.input.train, k=snakemake.params.k,
                   splits={s: (snakemake.input[s], snakemake.output[s]) for s in ("valid", "test")})
