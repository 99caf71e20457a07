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


def check_devices() -> None:
    """Fail early, with a clear message, when launched on more processes per node than
    the node has GPUs (a rule's `gpu` resource larger than the machine)."""
    import os

    import torch

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    if local_world <= 1:
        return
    available = torch.cuda.device_count()
    if available == 0:
        return  # CPU processes (gloo): valid, if slow
    if local_world > available:
        raise SystemExit(
            f"launched {local_world} processes on this node but it has {available} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            f"lower the rule's `gpu` resource in the profile")
