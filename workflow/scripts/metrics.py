"""Rule `metrics`: every model's predictions -> metrics.tsv (long format)."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.metrics import write_metrics_table

write_metrics_table(dataset=snakemake.wildcards.dataset, predictions=snakemake.input.predictions,
                    out=snakemake.output[0], ks=snakemake.params.ks,
                    items=snakemake.input.item_table)
