"""Command-line entry points for the stages that may run on GPUs under
`accelerate launch` (`python -m sidrec.cli.<stage>`). Hyperparameters arrive as one
JSON object (`--params`), exactly as Snakemake's `params:` hold them."""
import json

from ..errors import InputError


def parse_params(text: str, name: str = "--params") -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(name, f"not valid JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise InputError(name, "expected a JSON object")
    return value
