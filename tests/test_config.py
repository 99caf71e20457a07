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
