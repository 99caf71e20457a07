"""Rule `metrics`: every model's predictions -> metrics.tsv (long format)."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.evaluate import metrics_table, write_metrics

table = metrics_table(snakemake.wildcards.dataset, snakemake.input.predictions, snakemake.params.ks)
write_metrics(table, snakemake.output[0])
print(table[table.k == 10].to_string(index=False))
