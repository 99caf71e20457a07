# Helpers for every rules/*.smk file (target lists, config lookups, launch prefixes).
# Named functions only, so rules stay declarative.
import json
from pathlib import Path

PACKAGE = Path(workflow.basedir) / "sidrec"
SPLITS = ["valid", "test"]
MODELS = ["sft", "popularity", "sasrec"]



def check_datasets():
    """Every name in `run` must be a key of `datasets`: fail before any job starts."""
    for name in config["run"]:
        if name not in config["datasets"]:
            raise ValueError(
                f"config: key 'run': dataset {name!r} is not defined under 'datasets' "
                f"(defined: {sorted(config['datasets'])})"
            )


check_datasets()


def all_targets():
    return expand("results/{dataset}/metrics.tsv", dataset=config["run"])


def code(*modules):
    """Library modules a job runs, listed as inputs so that editing them reruns it."""
    return [str(PACKAGE / m) for m in modules]


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def max_history(wildcards):
    return config["datasets"][wildcards.dataset]["max_history"]


def as_json(obj):
    """Hyperparameters as one JSON string, passed to a shell command quoted with :q."""
    return json.dumps(obj, sort_keys=True)


def base_model_dir(wildcards):
    """Where the base LM for this dataset lives: the tiny model is built per dataset
    (its tokenizer comes from the dataset's text); named or local models are shared."""
    base = config["lm"]["base"]
    if base == "tiny":
        return f"results/models/tiny-{wildcards.dataset}"
    if base == "smollm2-135m":
        return "results/models/smollm2-135m"
    return base


def launcher(wildcards, resources):
    """How a GPU-capable stage is started: plain python on CPU, `accelerate launch`
    across the GPUs the rule was given otherwise."""
    gpus = int(getattr(resources, "gpu", 0) or 0)
    if gpus <= 0:
        return "python -m"
    return f"accelerate launch --num_processes {gpus} -m"
