"""Print a config file with every schema default filled in, as JSON (for runs without
Snakemake, e.g. bench/gpu_pipeline.py on the GPU machine).

    python bench/resolve_config.py config/gpu.yaml > .carry/gpu.json
"""
import json
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
config = yaml.safe_load(Path(sys.argv[1]).read_text()) or {}
validate(config, str(ROOT / "config/schema.yaml"))
for spec in config["datasets"].values():  # per-dataset defaults (schema additionalProperties)
    for key, default in (("path", None), ("category", None), ("start", None), ("end", None), ("max_history", 20)):
        spec.setdefault(key, default)
print(json.dumps(config, indent=1))
