"""Rule `significance`: the selected LM against every other model, per-row paired tests."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.significance import significance_table, write_significance

table = significance_table(snakemake.wildcards.dataset, snakemake.input.predictions, lms=snakemake.params.lms,
                           k=snakemake.params.k, n_boot=snakemake.params.n_boot, seed=snakemake.params.seed)
write_significance(table, snakemake.output[0])
print(table.to_string(index=False))
