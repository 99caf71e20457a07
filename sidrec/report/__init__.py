"""What `snakemake --report` shows: the summary table (summary.py) and the figures
(plots.py), made from the artifacts' own reports, metrics.tsv, significance.tsv and
Snakemake's benchmark files. Nothing here trains or decodes anything."""
