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


def check_sft_overrides():
    """A dataset's `sft` entry may only override keys that `sft` has (typos fail here,
    before any job starts, not in the SFT job)."""
    for name, spec in config["datasets"].items():
        unknown = sorted(set(spec.get("sft") or {}) - set(config["sft"]))
        if unknown:
            raise ValueError(
                f"config: key 'datasets.{name}.sft': unknown key(s) {unknown} "
                f"(expected some of {sorted(config['sft'])})"
            )


check_datasets()
check_sft_overrides()


def all_targets():
    return expand("results/{dataset}/metrics.tsv", dataset=config["run"])


def code(*modules):
    """Library modules a job runs, listed as inputs so that editing them reruns it."""
    return [str(PACKAGE / m) for m in modules]


def dataset_spec(wildcards):
    """How to read the dataset (its per-dataset `sft` overrides go to the sft rule)."""
    return {k: v for k, v in config["datasets"][wildcards.dataset].items() if k != "sft"}


def sft_params(wildcards):
    """The SFT hyperparameters for this dataset: `sft`, updated with the dataset's own
    `sft` entry. Changing either reruns exactly the SFT of the datasets it reaches."""
    overrides = config["datasets"][wildcards.dataset].get("sft") or {}
    return as_json({**config["sft"], **overrides})


def dataset_source_files(wildcards):
    """The files a dataset is read from, as inputs of `dataset`: new or edited source
    data makes every stage after it stale. A folder gives its visible files; ml-100k
    without a path gives the recbole wheel's two files. A missing path gives nothing
    here: the reader then stops with a message naming it. (The wheel is located as
    sidrec.data.movielens does, not imported from it: the Snakefile never imports
    sidrec, which `--sdm conda` users have only inside the rules' environment.)"""
    spec = config["datasets"][wildcards.dataset]
    path = spec.get("path")
    if path is None and spec["source"] == "movielens":
        import importlib.util

        found = importlib.util.find_spec("recbole")
        if found is None or found.origin is None:
            return []
        path = Path(found.origin).parent / "dataset_example" / "ml-100k"
        return [str(path / f"ml-100k.{ext}") for ext in ("inter", "item") if (path / f"ml-100k.{ext}").is_file()]
    if path is None:
        return []
    path = Path(path)
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        return sorted(str(f) for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    return []


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
