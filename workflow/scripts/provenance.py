"""Rule `provenance`: how this dataset's results were made -> provenance.json."""
import json
import sys
from pathlib import Path

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from sidrec.provenance import write_provenance

record = write_provenance(snakemake.output[0], dataset=snakemake.wildcards.dataset,
                          config=json.loads(snakemake.params.config), seeds=snakemake.params.seeds,
                          source=snakemake.input.source, artifacts=snakemake.input.artifacts,
                          models=snakemake.params.models, benchmarks=snakemake.input.benchmarks,
                          repo=Path(snakemake.scriptdir).parents[1])  # the repository of this workflow
print(f"git {record['git']}, config {record['config_sha256'][:12]}, "
      f"{len(record['files']['artifacts'])} artifact files, {len(record['rules'])} timed jobs")
