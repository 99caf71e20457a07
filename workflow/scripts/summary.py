"""Rule `summary`: every run's metrics.tsv -> mean and std over seeds, and the per-seed values."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.report.seeds import write_seed_summary

write_seed_summary(metrics_files=snakemake.input.metrics, seeds=snakemake.params.seeds,
                   summary_out=snakemake.output.summary, per_seed_out=snakemake.output.per_seed)
