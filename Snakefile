# sidrec: generative recommendation with semantic IDs.
# item text -> embeddings.npy -> rqvae.ckpt -> sid.json -> sft/ -> rl/ -> metrics.tsv
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


# The default config, wherever the working directory (--directory) is; files given
# with --configfile are merged on top of it, key by key.
configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


validate(config, "config/schema.yaml")


# `snakemake --report results/report.html`: this page opens it; rules/report.smk makes
# the figures and tables it shows.
report: "workflow/report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    candidate="[A-Za-z0-9_.+-]+",
    seed="[0-9]+",
    split="valid|test",


include: "rules/data.smk"
include: "rules/tokenize.smk"
include: "rules/generator.smk"
include: "rules/rl.smk"
include: "rules/baselines.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
