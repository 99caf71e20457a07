# Helpers for every rules/*.smk file (target lists, config lookups, code inputs, launch
# prefixes). Named functions only, so rules stay declarative.
import functools
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(workflow.basedir)
ACCELERATE_CONFIGS = ROOT / "config" / "accelerate"
SPLITS = ["valid", "test"]
# Models decoded from an LM folder results/{dataset}/{lm}.
LMS = ["sft", "rl"]
# The report's figures (rules/report.smk), each with workflow/report/{stem}.rst as caption.
PLOTS = ["quantizer_loss.png", "code_usage.png", "sid_collisions.png", "sft_training.png", "rl_training.png",
         "metrics_at_k.png", "summary.png", "significance.png", "stage_times.png"]
# Over every dataset and seed (the summary job): mean and std, and the per-seed values.
SUMMARY_FILES = ["results/summary.tsv", "results/summary_seeds.tsv"]
# Config sections a dataset may override with its own entry (datasets.NAME.sft, ...).
OVERRIDABLE = ("sft", "rl")

sys.path.insert(0, str(ROOT / "workflow"))
from code_inputs import package_files  # noqa: E402  (plain ast, never imports sidrec)
from lifeline_env import export_lifeline  # noqa: E402


export_lifeline()


def check_datasets():
    """Every name in `run` must be a key of `datasets`, and every dataset name a plain
    folder name: fail before any job starts."""
    import re

    for name in config["datasets"]:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or set(name) == {"."}:
            raise ValueError(
                f"config: key 'datasets.{name}': a dataset name must be a plain folder name "
                "(letters, digits, '_', '.', '-'; not starting with '.' or '-')"
            )
    for name in config["run"]:
        if name not in config["datasets"]:
            raise ValueError(
                f"config: key 'run': dataset {name!r} is not defined under 'datasets' "
                f"(defined: {sorted(config['datasets'])})"
            )


def check_overrides():
    """A dataset's `sft` or `rl` entry may only override keys that the section has, with
    values the schema allows for them (typos, wrong types and ranges fail here, before
    any job starts, not in the training job after five stages)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())["properties"]
    for section in OVERRIDABLE:
        validator = jsonschema.Draft202012Validator(schema[section])
        for name, spec in config["datasets"].items():
            overrides = spec.get(section) or {}
            unknown = sorted(set(overrides) - set(config[section]))
            if unknown:
                raise ValueError(
                    f"config: key 'datasets.{name}.{section}': unknown key(s) {unknown} "
                    f"(expected some of {sorted(config[section])})"
                )
            for error in validator.iter_errors(overrides):
                key = ".".join(str(p) for p in error.path)
                raise ValueError(f"config: key 'datasets.{name}.{section}.{key}': {error.message}")


def check_sasrec_grid():
    """Every point of `baselines.sasrec_grid` must be valid `baselines.sasrec` settings:
    fail before any job, naming the key, not in the training job."""
    import jsonschema
    import yaml

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())["properties"]
    validator = jsonschema.Draft202012Validator(schema["baselines"]["properties"]["sasrec"])
    for key, values in (config["baselines"].get("sasrec_grid") or {}).items():
        for value in values:
            for error in validator.iter_errors({key: value}):
                raise ValueError(f"config: key 'baselines.sasrec_grid.{key}': {value!r}: {error.message}")
        if len(set(map(str, values))) != len(values):
            raise ValueError(f"config: key 'baselines.sasrec_grid.{key}': repeated value in {values}")


def normalise_seeds():
    """`seeds` as integers (from the command line they arrive as strings), each once."""
    seeds = [int(s) for s in config["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"config: key 'seeds': a seed is repeated in {config['seeds']}")
    config["seeds"] = seeds


check_datasets()
check_overrides()
check_sasrec_grid()
normalise_seeds()


def all_targets():
    """Per dataset and seed: the metrics, the paired tests, the provenance record and the
    report's plots (so that `snakemake --report` finds every report item built); then the
    summary over seeds."""
    per_run = ["metrics.tsv", "significance.tsv", "provenance.json"] + [f"report/{p}" for p in PLOTS]
    return expand([f"results/{{dataset}}/seed-{{seed}}/{f}" for f in per_run],
                  dataset=config["run"], seed=config["seeds"]) + SUMMARY_FILES


def metrics_files(wildcards):
    """Every run's metrics.tsv: the datasets of `run` x `seeds`."""
    return [f"results/{d}/seed-{s}/metrics.tsv" for d in config["run"] for s in config["seeds"]]


def metrics_seeds(wildcards):
    """The seed of each of `metrics_files`, in its order."""
    return [int(s) for _ in config["run"] for s in config["seeds"]]


def code(entry):
    """The package files that `entry` (a workflow/scripts file or a sidrec.cli module)
    imports, transitively: inputs of its rule, so that editing one reruns exactly the
    jobs that run it. Derived from the imports (workflow/code_inputs.py), never listed
    by hand."""
    return [str(ROOT / f) for f in package_files(entry, ROOT)]


def repo_path(path):
    """Config paths are absolute or relative to the repository root, whatever the
    working directory (`--directory`) is."""
    return os.path.normpath(ROOT / path) if not Path(path).is_absolute() else str(path)


def dataset_spec(wildcards):
    """How to read the dataset (its per-dataset `sft` and `rl` overrides go to those rules)."""
    spec = {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in OVERRIDABLE}
    if spec.get("path") is not None:
        spec["path"] = repo_path(spec["path"])
    return spec


def run_seed(wildcards):
    """The job's seed: one of `seeds`, the {seed} of its path."""
    return int(wildcards.seed)


def with_seed(section, wildcards):
    """A config section with the job's seed (`run_seed`) added to its own `seed`."""
    return {**section, "seed": int(section.get("seed", 0)) + run_seed(wildcards)}


def merged_section(section, wildcards):
    """A training section (`sft`, `rl`) updated with this dataset's own entry, unseeded."""
    return {**config[section], **(config["datasets"][wildcards.dataset].get(section) or {})}


def section_params(section, wildcards):
    """merged_section seeded by the job's seed, as one JSON string. Changing the section
    or the dataset's entry reruns exactly the jobs of the datasets it reaches."""
    return as_json(with_seed(merged_section(section, wildcards), wildcards))


# Distillation's keys join the sft settings only when it is on: off (absent or weight 0)
# leaves the settings, and every hash downstream, as they were before the keys existed.
DISTILL_KEYS = ("distill_weight", "distill_temperature")


def distils(wildcards):
    """Whether this dataset's SFT distils from the seed's SASRec (sft.distill_weight > 0)."""
    return float(merged_section("sft", wildcards).get("distill_weight") or 0) > 0


def sft_params(wildcards):
    own = merged_section("sft", wildcards)
    if not distils(wildcards):
        own = {k: v for k, v in own.items() if k not in DISTILL_KEYS}
    if not own.get("history_title_words"):  # likewise: titles in the prompt join only when on
        own.pop("history_title_words", None)
    return as_json(with_seed(own, wildcards))


def sft_teacher(wildcards):
    """The teacher SFT reads: the seed's selected SASRec when distilling, else nothing."""
    if distils(wildcards):
        return f"results/{wildcards.dataset}/seed-{wildcards.seed}/sasrec.ckpt"
    return []


def sft_teacher_arg(wildcards, input):
    return f"--teacher {shlex.quote(str(input.teacher))}" if input.teacher else ""


# Which vectors the similarity reward compares is a choice of input file, not an RL setting.
RL_INPUT_KEYS = ("similarity_vectors",)


def rl_params(wildcards):
    """The merged rl section less RL_INPUT_KEYS, seeded, as JSON (what sidrec.cli.rl reads)."""
    own = {k: v for k, v in merged_section("rl", wildcards).items() if k not in RL_INPUT_KEYS}
    return as_json(with_seed(own, wildcards))


def rl_vectors(wildcards):
    """The similarity reward's item vectors: embeddings.npy (rl.similarity_vectors text)
    or what the quantiser read (quantizer: with a collaborative input, item_vectors.npy)."""
    if merged_section("rl", wildcards).get("similarity_vectors", "text") == "quantizer":
        return quantizer_vectors(wildcards)
    return f"results/{wildcards.dataset}/embeddings.npy"


# Which vectors the quantiser reads is a choice of input file, not a quantiser setting.
QUANTIZER_INPUT_KEYS = ("input", "collaborative_weight")


def quantizer_params(wildcards):
    settings = {k: v for k, v in config["quantizer"].items() if k not in QUANTIZER_INPUT_KEYS}
    return as_json(with_seed(settings, wildcards))


def vectors_job():
    """The job whose output quantize and sid read: embed (quantizer.input text) or
    item_vectors (text and/or the seed's SASRec item embeddings)."""
    return "embed" if config["quantizer"]["input"] == "text" else "item_vectors"


def quantizer_vectors(wildcards):
    """vectors_job()'s output: embeddings.npy, or the seed's item_vectors.npy."""
    if vectors_job() == "embed":
        return f"results/{wildcards.dataset}/embeddings.npy"
    return f"results/{wildcards.dataset}/seed-{wildcards.seed}/item_vectors.npy"


def tiny_params(wildcards):
    return with_seed(config["lm"]["tiny"], wildcards)


def sasrec_candidates(wildcards=None):
    """name -> settings of every SASRec configuration to train: `baselines.sasrec`, updated
    with each point of `baselines.sasrec_grid` (all combinations, in the grid's key and
    value order), seeded by the job's seed (without wildcards, unseeded: for the names).
    No grid: one candidate, "default". A name spells its point ("dropout0.2_hidden64"),
    so adding a value to the grid trains only the new points."""
    import itertools

    grid = config["baselines"].get("sasrec_grid") or {}
    keys = sorted(grid)
    out = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        name = "_".join(f"{k}{v}" for k, v in point.items()) or "default"
        settings = {**config["baselines"]["sasrec"], **point}
        out[name] = with_seed(settings, wildcards) if wildcards is not None else settings
    return out


def sasrec_candidate_names(wildcards):
    return list(sasrec_candidates())


def sasrec_candidate_params(wildcards):
    return as_json(sasrec_candidates(wildcards)[wildcards.candidate])


def sasrec_candidate_files(wildcards):
    return [f"{run_dir(wildcards)}/sasrec_grid/{name}.ckpt" for name in sasrec_candidates()]


def sasrec_params(wildcards):
    """The SASRec settings before the grid (the seed the report records)."""
    return as_json(with_seed(config["baselines"]["sasrec"], wildcards))


def decode_params(wildcards):
    """The decoding settings (`evaluate` without `models`: which models metrics.tsv
    holds does not change any model's predictions)."""
    return as_json({k: v for k, v in config["evaluate"].items() if k != "models"})


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
    path = Path(repo_path(path))
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        return sorted(str(f) for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    return []


def max_history(wildcards):
    return config["datasets"][wildcards.dataset]["max_history"]


def top_k():
    return max(config["evaluate"]["ks"])


def as_json(obj):
    """Hyperparameters as one JSON string, passed to a shell command quoted with :q."""
    return json.dumps(obj, sort_keys=True)


def run_dir(wildcards):
    """results/DATASET/seed-SEED: where a run's seeded artifacts live (the data tables,
    embeddings and popularity lists, which no seed changes, stay in results/DATASET)."""
    return f"results/{wildcards.dataset}/seed-{wildcards.seed}"


def base_model_dir(wildcards):
    """Where the base LM for this dataset lives: the tiny model is built per dataset
    (its tokenizer comes from the dataset's text) and seed (its initial weights); named
    or local models are shared."""
    base = config["lm"]["base"]
    if base == "tiny":
        return f"results/models/tiny-{wildcards.dataset}-seed-{wildcards.seed}"
    if base == "smollm2-135m":
        return "results/models/smollm2-135m"
    return repo_path(base)


def prediction_file(wildcards, model, split):
    """A model's ranked lists: popularity's are the same for every seed."""
    folder = f"results/{wildcards.dataset}" if model == "popularity" else run_dir(wildcards)
    return f"{folder}/predictions/{model}_{split}.parquet"


def metrics_predictions(wildcards):
    """The predictions of every model that `evaluate.models` names, valid and test."""
    return [prediction_file(wildcards, model, split) for model in config["evaluate"]["models"] for split in SPLITS]


def gpus(resources):
    return int(getattr(resources, "gpu", 0) or 0)


def device(wildcards, resources):
    """The device a GPU-capable stage runs on follows its `gpu` resource only: gpu=0 is
    the CPU, even on a machine with a GPU."""
    return "cuda" if gpus(resources) > 0 else "cpu"


def launcher(multi_gpu_config=None):
    """How a GPU-capable stage starts, given the rule's `gpu` resource: plain python on
    CPU (gpu=0), `accelerate launch` on one GPU, or with `multi_gpu_config` (a file of
    config/accelerate/) across several; None for a stage that runs on one device only.
    Returns an input function for `params:`."""

    def launch(wildcards, resources):
        n = gpus(resources)
        if n <= 0:
            return "python -m"
        if n > 1 and multi_gpu_config is None:
            raise ValueError(f"this stage runs on one device: its gpu resource must be 0 or 1, got {n}")
        name = "single_gpu.yaml" if n == 1 else multi_gpu_config
        path = ACCELERATE_CONFIGS / name
        if not path.exists():
            raise ValueError(f"accelerate config {path} not found (rule asks for {n} GPUs)")
        extra = ""
        if path.name.startswith("zero"):
            # Absolute path on the command line: the yaml's relative one holds only
            # when jobs run from the repository root.
            extra = f" --deepspeed_config_file {shlex.quote(str(path.with_suffix('.json')))}"
        return f"accelerate launch --num_processes {n} --config_file {shlex.quote(str(path))}{extra} -m"

    return launch


# --------------------------------------------------------------------------------------
# Lineage: every job's params carry a hash of everything its outputs were made from
# --------------------------------------------------------------------------------------
# Snakemake reruns a job whose own params, code or inputs changed; but when a job fails
# after a config change, its outputs are removed, and if the files downstream of it still
# exist Snakemake does not rebuild the missing intermediate: the downstream jobs carry no
# upstream settings, so nothing says they are stale ("Nothing to be done", old metrics).
# `lineage(rule)` is a params entry, a hash of the job's own settings and code and of the
# lineage of every job whose outputs it reads: a change anywhere upstream changes the
# params of every job below it, so they are stale by their own params and rebuilt, and
# the missing intermediate with them.

# Files up to this size are hashed by content (so a rewrite with the same bytes, as a
# test's edit-and-restore, changes nothing); larger ones by size and mtime (cheap).
_CONTENT_HASH_LIMIT = 64 * 2**20


@functools.lru_cache(maxsize=None)
def _file_digest(path, size, mtime_ns):
    if size > _CONTENT_HASH_LIMIT:
        return f"size={size}:mtime={mtime_ns}"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_digest(path):
    """sha256 of a file's bytes (size and mtime for a big one); None for a missing one."""
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    return _file_digest(str(p.resolve()), st.st_size, st.st_mtime_ns)


def _code_digests(entry):
    files = code(entry) + ([str(ROOT / entry)] if entry.endswith(".py") else [])
    return {os.path.relpath(f, ROOT): file_digest(f) for f in files}


def _base_lineage(w):
    base = config["lm"]["base"]
    if base == "tiny":
        return tiny_params(w), "workflow/scripts/base_tiny.py", ["dataset"]
    if base == "smollm2-135m":
        return {}, "workflow/scripts/base_smollm2.py", []
    folder = Path(repo_path(base))  # a local model folder: its files are what it is
    files = sorted(folder.rglob("*")) if folder.is_dir() else []
    return {"path": str(folder), "files": {str(f): file_digest(f) for f in files if f.is_file()}}, None, []


def _lineage_node(job, w):
    """(own settings, code entry or None, upstream jobs) of `job` for wildcards `w`. An
    upstream job "predict:sft" is the predict job with lm=sft ("sasrec:NAME": the grid
    candidate NAME); the report's rules read
    metrics.tsv and the predictions, all under metrics' lineage."""
    if job == "dataset":
        sources = {str(f): file_digest(f) for f in dataset_source_files(w)}
        return {"spec": dataset_spec(w), "source": sources}, "workflow/scripts/dataset.py", []
    if job == "embed":
        return config["encoder"], "sidrec.cli.embed", ["dataset"]
    if job == "item_vectors":
        own = {k: config["quantizer"][k] for k in QUANTIZER_INPUT_KEYS}
        return own, "workflow/scripts/item_vectors.py", ["embed", "sasrec_select"]
    if job == "quantize":
        return quantizer_params(w), "sidrec.cli.quantize", [vectors_job()]
    if job == "sid":
        return config["quantizer"]["codebook_size"], "workflow/scripts/sid.py", [vectors_job(), "quantize"]
    if job == "base":
        return _base_lineage(w)
    if job == "sft":
        return sft_params(w), "sidrec.cli.sft", ["base", "dataset", "sid"] + (["sasrec_select"] if distils(w) else [])
    if job == "rl":
        # the vectors' choice joins the settings only off its default: hashes stay as they were
        vectors = merged_section("rl", w).get("similarity_vectors", "text")
        own = rl_params(w) if vectors == "text" else [rl_params(w), {"similarity_vectors": vectors}]
        return own, "sidrec.cli.rl", ["sft", "dataset", "sid"]
    if job == "predict":
        return decode_params(w), "sidrec.cli.predict", [w.lm, "dataset", "sid"]
    if job == "popularity":
        return top_k(), "workflow/scripts/popularity.py", ["dataset"]
    if job == "sasrec":
        return [sasrec_candidate_params(w), max_history(w)], "sidrec.cli.sasrec", ["dataset"]
    if job == "sasrec_select":
        candidates = [f"sasrec:{name}" for name in sasrec_candidates()]  # names only
        return top_k(), "workflow/scripts/sasrec_select.py", candidates + ["dataset"]
    if job == "metrics":
        models = config["evaluate"]["models"]
        upstream = [f"predict:{m}" if m in LMS else "sasrec_select" if m == "sasrec" else m for m in models]
        return [config["evaluate"]["ks"], models], "workflow/scripts/metrics.py", upstream + ["dataset"]
    if job in ("significance", "plots", "provenance"):
        return {}, None, ["metrics"]
    raise ValueError(f"lineage: no entry for job {job!r}")


@functools.lru_cache(maxsize=None)
def _lineage(job, dataset, seed=None, lm=None, candidate=None):
    w = SimpleNamespace(dataset=dataset, seed=seed, lm=lm, candidate=candidate)
    rule_name, _, sub = job.partition(":")
    if sub:  # "predict:sft" is predict with lm=sft; "sasrec:NAME" one grid candidate
        if rule_name == "predict":
            w.lm = sub
        else:
            w.candidate = sub
    own, entry, upstream = _lineage_node(rule_name, w)
    parts = {"job": rule_name, "own": own, "code": _code_digests(entry) if entry else {},
             "upstream": {u: _lineage(u, dataset, seed) for u in upstream}}
    return hashlib.sha256(as_json(parts).encode()).hexdigest()


def lineage(rule_name):
    """Input function for `params:`: the hash of everything the job's outputs come from
    (its settings, its code, and recursively the same of every job upstream)."""

    def of(wildcards):
        # base_smollm2 is one job for every dataset: no {dataset} wildcard
        return _lineage(rule_name, getattr(wildcards, "dataset", None), getattr(wildcards, "seed", None),
                        getattr(wildcards, "lm", None), getattr(wildcards, "candidate", None))

    return of


# --------------------------------------------------------------------------------------
# The report's rules (rules/report.smk): which models, files and benchmarks a dataset has
# --------------------------------------------------------------------------------------


def evaluated_lms():
    """The LM folders that the evaluated models need (rl is trained from sft)."""
    models = config["evaluate"]["models"]
    return [lm for lm in LMS if lm in models or (lm == "sft" and "rl" in models)]


def significance_lms():
    """The LMs the significance rule chooses from, by valid NDCG@k."""
    return [lm for lm in LMS if lm in config["evaluate"]["models"]]


def significance_k():
    """The cut-off of the paired tests: 10, else the largest k."""
    ks = config["evaluate"]["ks"]
    return 10 if 10 in ks else max(ks)


def lm_dirs(wildcards):
    return [f"{run_dir(wildcards)}/{lm}" for lm in evaluated_lms()]


def model_files(wildcards):
    """model -> its files: predictions, plus the LM folder or the SASRec checkpoint."""
    out, run = {}, run_dir(wildcards)
    for model in config["evaluate"]["models"]:
        files = [prediction_file(wildcards, model, split) for split in SPLITS]
        if model in LMS:
            files.insert(0, f"{run}/{model}")
        elif model == "sasrec":
            files[:0] = [f"{run}/sasrec.ckpt", f"{run}/sasrec_selection.json"]
        out[model] = files
    if "sft" in evaluated_lms() and "sft" not in out:
        out["sft"] = [f"{run}/sft"]
    return out


def quantizer_files(wildcards):
    """The SID stages' outputs, which exist only when an LM is evaluated."""
    if not evaluated_lms():
        return []
    return [f"results/{wildcards.dataset}/embeddings.npy"] + [f"{run_dir(wildcards)}/{f}" for f in
                                                              ("rqvae.ckpt", "sid.json", "sid.meta.json")]


def provenance_artifacts(wildcards):
    """Every file the dataset's results come from, after the source data: tables,
    SID stages, base LM, models, predictions, metrics and significance."""
    d = wildcards.dataset
    files = [f"results/{d}/data/{t}.parquet" for t in ("items", "train", "valid", "test")]
    files += quantizer_files(wildcards)
    if evaluated_lms():
        files.append(base_model_dir(wildcards))
    files += [f for model in model_files(wildcards).values() for f in model]
    return files + [f"{run_dir(wildcards)}/metrics.tsv", f"{run_dir(wildcards)}/significance.tsv"]


def stage_benchmarks(wildcards):
    """The benchmark files of the jobs that make the run's results (the dataset's
    unseeded jobs, in results/DATASET/benchmarks, among them)."""
    d, run = wildcards.dataset, run_dir(wildcards)
    models = config["evaluate"]["models"]
    shared, seeded = ["dataset"], []
    if evaluated_lms():
        shared.append("embed")
        seeded += ([] if vectors_job() == "embed" else ["item_vectors"]) + ["quantize", "sid"] + evaluated_lms()
    seeded += [f"predict_{lm}" for lm in LMS if lm in models]
    if "popularity" in models:
        shared.append("popularity")
    if "sasrec" in models:
        seeded += [f"sasrec_grid/{name}" for name in sasrec_candidates()] + ["sasrec_select"]
    files = [f"results/{d}/benchmarks/{job}.tsv" for job in shared]
    files += [f"{run}/benchmarks/{job}.tsv" for job in seeded + ["metrics", "significance"]]
    base = config["lm"]["base"]
    if evaluated_lms() and base in ("tiny", "smollm2-135m"):
        files.append(f"results/benchmarks/base_tiny-{d}-seed-{wildcards.seed}.tsv" if base == "tiny"
                     else "results/benchmarks/base_smollm2.tsv")
    return files


def run_config(wildcards):
    """The resolved config of this run alone (its dataset, its seed): what reproduces it,
    and unchanged when another dataset or seed joins the config."""
    return as_json({**config, "run": [wildcards.dataset], "seeds": [run_seed(wildcards)],
                    "datasets": {wildcards.dataset: config["datasets"][wildcards.dataset]}})


def run_seeds(wildcards):
    """Every seed the run's stages ran with (the run's seed added to each own)."""
    return {"run": run_seed(wildcards), "quantizer": with_seed(config["quantizer"], wildcards)["seed"],
            "tiny_lm": tiny_params(wildcards).get("seed"), "sft": json.loads(sft_params(wildcards))["seed"],
            "rl": json.loads(rl_params(wildcards))["seed"], "sasrec": json.loads(sasrec_params(wildcards))["seed"],
            "significance_bootstrap": run_seed(wildcards)}


def plot_output(name):
    """A figure of the report: results/{dataset}/seed-{seed}/report/NAME, captioned by
    workflow/report/STEM.rst."""
    caption = ROOT / "workflow" / "report" / f"{Path(name).stem}.rst"
    return report(f"results/{{dataset}}/seed-{{seed}}/report/{name}", caption=str(caption), category="Figures",
                  subcategory="{dataset}, seed {seed}")
