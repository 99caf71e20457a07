# Helpers for every rules/*.smk file (target lists, config lookups, launch prefixes).
# Named functions only, so rules stay declarative.
import json
import shlex
from pathlib import Path

PACKAGE = Path(workflow.basedir) / "sidrec"
ACCELERATE_CONFIGS = Path(workflow.basedir) / "config" / "accelerate"
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


def launcher(multi_gpu_config):
    """How a GPU-capable stage starts, given the rule's `gpu` resource: plain python on
    CPU (gpu=0), `accelerate launch` on one GPU, or with `multi_gpu_config` (a file of
    config/accelerate/) across several. Returns an input function for `params:`."""

    def launch(wildcards, resources):
        gpus = int(getattr(resources, "gpu", 0) or 0)
        if gpus <= 0:
            return "python -m"
        name = "single_gpu.yaml" if gpus == 1 else multi_gpu_config
        path = ACCELERATE_CONFIGS / name
        if not path.exists():
            raise ValueError(f"accelerate config {path} not found (rule asks for {gpus} GPUs)")
        extra = ""
        if path.name.startswith("zero"):
            # Absolute path on the command line: the yaml's relative one holds only
            # when jobs run from the repository root.
            extra = f" --deepspeed_config_file {shlex.quote(str(path.with_suffix('.json')))}"
        return f"accelerate launch --num_processes {gpus} --config_file {shlex.quote(str(path))}{extra} -m"

    return launch
