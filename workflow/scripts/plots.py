"""Rule `plots`: the report's figures and summary table."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.report.plots import write_plots

write_plots(out=dict(snakemake.output.items()), quantizer_files=snakemake.input.quantizer,
            lm_dirs=snakemake.input.lms, metrics=snakemake.input.metrics,
            significance_tsv=snakemake.input.significance, predictions=snakemake.input.predictions,
            benchmarks=snakemake.input.benchmarks, k=snakemake.params.k, seed=snakemake.params.seed)
