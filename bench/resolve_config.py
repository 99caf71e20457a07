"""Print the config a Snakemake run would see, with every schema default filled in, as
JSON (for runs without Snakemake, e.g. bench/gpu_pipeline.py on the GPU machine).

Snakemake loads config/config.yaml (the Snakefile's `configfile:`) and then merges each
`--configfile` on top, nested keys one by one; this does the same, so a bench run and
`snakemake --configfile A B` train with the same settings:

    python bench/resolve_config.py config/gpu.yaml [config/gpu_industrial.yaml] > .carry/gpu.json
"""
import json
import sys
from pathlib import Path

import yaml
from snakemake.utils import update_config, validate

ROOT = Path(__file__).resolve().parents[1]


def resolve(paths) -> dict:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text()) or {}
    for path in paths:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    validate(config, str(ROOT / "config/schema.yaml"))
    for spec in config["datasets"].values():  # per-dataset defaults (schema additionalProperties)
        for key, default in (("path", None), ("category", None), ("start", None), ("end", None),
                             ("max_history", 20)):
            spec.setdefault(key, default)
    return config


if __name__ == "__main__":
    print(json.dumps(resolve(sys.argv[1:]), indent=1))
