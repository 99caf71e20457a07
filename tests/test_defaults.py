"""One place per default: each config section's schema defaults equal the defaults of the
dataclass its stage builds from it, key by key."""
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from sidrec.baselines.sasrec import SASRecConfig
from sidrec.embed import EncoderConfig
from sidrec.evaluate import EvaluateConfig
from sidrec.lm.base import TinyConfig
from sidrec.lm.sft import SFTConfig
from sidrec.quantize.rqvae import RQVAEConfig
from sidrec.rl.grpo import RLConfig

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())

# section path in the schema, dataclass, keys the schema has that the dataclass does not
# take (handled by the workflow), dataclass fields that are deliberately not in the config.
SECTIONS = [
    (("encoder",), EncoderConfig, set(), set()),
    # input and collaborative_weight choose the input file (rule item_vectors), not the model
    (("quantizer",), RQVAEConfig, {"method", "input", "collaborative_weight"},
     {"input_dim", "sinkhorn_iters", "sinkhorn_levels"}),
    (("lm", "tiny"), TinyConfig, set(), {"max_position_embeddings", "min_frequency"}),
    (("sft",), SFTConfig, set(), {"lora_target_modules", "bf16", "max_grad_norm",
                                  "logging_steps", "eval_batch_size", "group_by_length"}),
    # similarity_vectors chooses the rl rule's input file
    (("rl",), RLConfig, {"similarity_vectors"}, {"bf16"}),
    (("evaluate",), EvaluateConfig, set(), set()),
    (("baselines", "sasrec"), SASRecConfig, set(), {"max_len", "device", "eval_every"}),
]


def schema_section(path):
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    return node["properties"]


def default_of(field):
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    raise AssertionError(f"{field.name} has no default")


def comparable(value):
    return list(value) if isinstance(value, (tuple, list)) else value


@pytest.mark.parametrize("path, cls, workflow_only, internal", SECTIONS, ids=[".".join(s[0]) for s in SECTIONS])
def test_schema_defaults_equal_the_dataclass_defaults(path, cls, workflow_only, internal):
    schema = schema_section(path)
    dataclass_fields = {f.name: f for f in fields(cls)}
    for key, spec in schema.items():
        if key in workflow_only:
            continue
        assert key in dataclass_fields, f"{'.'.join(path)}.{key} is configurable but {cls.__name__} has no such field"
        assert "default" in spec, f"{'.'.join(path)}.{key} has no schema default"
        assert comparable(spec["default"]) == comparable(default_of(dataclass_fields[key])), (
            f"{'.'.join(path)}.{key}: schema default {spec['default']!r}, "
            f"{cls.__name__} default {default_of(dataclass_fields[key])!r}")
    unlisted = set(dataclass_fields) - set(schema) - internal
    assert not unlisted, f"{cls.__name__} fields {sorted(unlisted)} are neither in the schema nor marked internal"


def test_quantizer_method_default_is_rqvae():
    assert schema_section(("quantizer",))["method"]["default"] == "rqvae"
