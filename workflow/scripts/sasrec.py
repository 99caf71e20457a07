"""Rule `sasrec`: train SASRec with early stopping on valid, rank valid and test."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

import torch

from sidrec.baselines.sasrec import SASRecConfig, rank_sasrec, save_sasrec, train_sasrec
from sidrec.data.tables import read_items, read_samples
from sidrec.evaluate import predictions_frame, write_predictions

torch.set_num_threads(snakemake.threads)
n_items = len(read_items(snakemake.input.item_table))
splits = {s: read_samples(snakemake.input[s], n_items) for s in ("train", "valid", "test")}
config = SASRecConfig(**snakemake.params.hp, max_len=snakemake.params.max_len)
model, report = train_sasrec(splits["train"], splits["valid"], n_items, config)
save_sasrec(snakemake.output.model, model, config, report)
for split in ("valid", "test"):
    ranked, scores = rank_sasrec(model, splits[split], snakemake.params.k)
    write_predictions(predictions_frame(splits[split], ranked, scores), snakemake.output[split])
