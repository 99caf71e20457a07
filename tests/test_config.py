"""The config schema: defaults filled, unknown keys and wrong types rejected by name."""
import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "config" / "schema.yaml")


def load(name="config.yaml"):
    return yaml.safe_load((ROOT / "config" / name).read_text())


def test_default_config_validates_and_fills_defaults():
    config = load()
    validate(config, SCHEMA)
    assert config["quantizer"]["levels"] == 3
    assert config["quantizer"]["codebook_size"] == 256
    assert config["sft"]["tasks"][0] == "next_item"
    assert config["baselines"]["sasrec"]["patience"] == 10


def test_empty_config_gets_every_default():
    config = {}
    validate(config, SCHEMA)
    assert config["run"] == ["ml-100k"]
    assert config["datasets"]["ml-100k"]["source"] == "movielens"
    assert config["evaluate"]["ks"] == [1, 3, 5, 10, 20]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")
                                        if p.name != "schema.yaml"))
def test_every_shipped_config_validates(name):
    validate(load(name), SCHEMA)


@pytest.mark.parametrize("path,value,expected", [
    (("quantizer", "bogus"), 1, "bogus"),
    (("quantizer", "levels"), "three", "three"),
    (("sft", "lr"), -1.0, "lr"),
    (("datasets", "ml-100k", "source"), "csv", "csv"),
    (("unknown_top_level",), {}, "unknown_top_level"),
])
def test_bad_values_are_named(path, value, expected):
    config = copy.deepcopy(load())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(Exception) as err:
        validate(config, SCHEMA)
    assert expected in str(err.value)


def test_bench_config_resolution_matches_what_snakemake_runs(tmp_path):
    """bench/resolve_config.py (GPU runs without Snakemake) must merge config files as
    Snakemake does: config.yaml first, then each --configfile on top."""
    import json
    import re
    import subprocess
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from resolve_config import resolve

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"ml-100k": {"source": "movielens", "sft": {"epochs": 2}}}}))
    files = [str(ROOT / "config" / "gpu.yaml"), str(overlay)]
    resolved = resolve(files)
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--directory", str(tmp_path),
                          "--snakefile", str(ROOT / "Snakefile"), "--configfile", *files, "--", "results/ml-100k/sft"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ran = json.loads(re.search(r"sidrec\.cli\.sft .*--params '([^']*)'", out.stdout).group(1))
    assert ran == {**resolved["sft"], **resolved["datasets"]["ml-100k"]["sft"]}
    assert ran["tasks"] == ["next_item", "sid_to_title", "title_to_sid", "history_to_title"]
    assert ran["epochs"] == 2 and ran["lr"] == 0.0005
