"""Rule `sasrec_select`: keep the SASRec configuration best on valid, rank valid and test."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.stages.sasrec import select_sasrec

select_sasrec(items=snakemake.input.item_table, candidates=dict(zip(snakemake.params.names, snakemake.input.candidates)),
              model_out=snakemake.output.model, selection_out=snakemake.output.selection, k=snakemake.params.k,
              splits={s: (snakemake.input[s], snakemake.output[s]) for s in ("valid", "test")})
