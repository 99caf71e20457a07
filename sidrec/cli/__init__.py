"""Command-line entry points for the stages that may run on GPUs under
`accelerate launch` (`python -m sidrec.cli.<stage>`). Hyperparameters arrive as one
JSON object (`--params`), exactly as Snakemake's `params:` hold them; `--device` comes
from the rule's `gpu` resource (gpu=0: the CPU, even on a machine with a GPU). Each
CLI only unpacks its arguments and calls its stage function in `sidrec.stages`."""
import argparse
import json

from ..errors import InputError
from . import lifeline

DEVICES = ("cpu", "cuda")


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the options every stage CLI shares. Every stage CLI
    builds one first, so this is also where the process is tied to the workflow that
    started it (`lifeline.hold`: a killed snakemake leaves no trainer running)."""
    lifeline.hold()
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=DEVICES, default="cpu",
                    help="cpu, or cuda (under accelerate launch: this process's GPU)")
    ap.add_argument("--params", default="{}", help="JSON object of the stage's settings")
    return ap


def parse_params(text: str, name: str = "--params") -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(name, f"not valid JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise InputError(name, "expected a JSON object")
    return value


def check_devices(device: str = "cuda") -> None:
    """Fail early, with a clear message, when asked for CUDA on a machine without it, or
    launched on more processes per node than the node has GPUs (a rule's `gpu` resource
    larger than the machine)."""
    import os

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda (the rule's gpu resource is > 0) but torch sees no CUDA "
                         f"device (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                         "set the rule's `gpu` resource to 0 to run it on the CPU")

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
