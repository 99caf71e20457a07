"""Rule `popularity`: count training targets, rank by count for every row."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.baselines.popularity import fit_popularity, rank_popularity
from sidrec.data.tables import read_items, read_samples
from sidrec.evaluate import predictions_frame, write_predictions

n_items = len(read_items(snakemake.input.item_table))
counts = fit_popularity(read_samples(snakemake.input.train, n_items), n_items)
for split in ("valid", "test"):
    samples = read_samples(snakemake.input[split], n_items)
    ranked = rank_popularity(counts, len(samples), snakemake.params.k)
    scores = counts[ranked].astype("float32")
    write_predictions(predictions_frame(samples, ranked, scores), snakemake.output[split])
