"""Scaffolding of one training run, for any trainer (SFT here, RL next): where its
resumable state lives, when that state may be resumed, what the run is stamped with,
and how its final folder is written.

The pattern (STYLE.md, Snakemake): Snakemake clears a job's declared outputs, so the
trainer's checkpoints live in a scratch folder outside them (`scratch_path`); they are
resumed only by the very same run (`fingerprint`, `prepare_scratch`); the final model
is written into the declared output in one rename at the end (`save_final`), with a
JSON report that says how it was made (`library_versions` included).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import InputError
from ..io import atomic_dir
import torch

from .base import WEIGHT_FILES, resolve_device

FINGERPRINT_FILE = "fingerprint.txt"
# Trainer writes trainer_state.json last in a checkpoint (after weights, optimizer,
# scheduler, RNG), so its presence means the save got to the end.
TRAINER_STATE = "trainer_state.json"
# Adapters (LoRA not merged) and FSDP shards are weights too: Trainer resumes from them.
CHECKPOINT_WEIGHTS = WEIGHT_FILES + ("adapter_model.safetensors", "adapter_model.bin")
_FSDP_PREFIX = "pytorch_model_fsdp"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# What every trainer of this package runs on; a trainer adds its own (e.g. "trl").
_LIBRARIES = ("torch", "transformers", "accelerate", "peft", "tokenizers")


def scratch_path(out_dir, scratch_dir=None) -> Path:
    """The trainer's scratch folder: `scratch_dir`, or a hidden folder beside `out_dir`.
    InputError if it lies inside `out_dir` (the final save replaces that folder)."""
    out_dir = Path(out_dir)
    scratch = Path(scratch_dir) if scratch_dir is not None else out_dir.parent / f".{out_dir.name}.scratch"
    if scratch.resolve().is_relative_to(out_dir.resolve()):
        raise InputError(scratch, f"the scratch folder must not be inside the output {out_dir}")
    return scratch


def fingerprint(config: dict, base_dir, data: Iterable = ()) -> str:
    """Hex digest of what a resumable checkpoint must have been trained on: the config
    (a JSON-able dict; sequences as lists), the base model folder (its path and each
    file's name, size and mtime: cheap, and a rebuilt base changes them) and the data.

    Each item of `data` is an object with `.digest(h)` (feeds itself into the hash, as
    `sft.EncodedExamples` does), bytes, a str, or a numpy array.
    """
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True, default=list).encode())
    base_dir = Path(base_dir)
    h.update(str(base_dir.resolve()).encode())
    for f in sorted(base_dir.iterdir()):
        if f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    for part in data:
        if hasattr(part, "digest"):
            part.digest(h)
        elif isinstance(part, (bytes, bytearray, memoryview)):
            h.update(part)
        elif isinstance(part, str):
            h.update(part.encode())
        elif isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            raise TypeError(f"cannot fingerprint {type(part).__name__}: pass bytes, str, a numpy "
                            "array or an object with .digest(hash)")
    return h.hexdigest()


def _whole_safetensors(path: Path) -> bool:
    """The file holds its whole header and every tensor the header lists (a save cut
    short by a kill leaves it shorter). Reads the header only, not the weights."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
        return path.stat().st_size >= 8 + size + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def is_complete_checkpoint(path) -> bool:
    """A Trainer checkpoint folder that got to its end: a trainer_state.json that parses
    (Trainer writes it last, after weights, optimizer, scheduler and RNG state, so a
    whole one means the rest was written) and weights, safetensors ones whole."""
    path = Path(path)
    try:
        json.loads((path / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    weights = [path / f for f in CHECKPOINT_WEIGHTS if (path / f).is_file()]
    if any(f.suffix == ".safetensors" and not _whole_safetensors(f) for f in weights):
        return False
    return bool(weights) or any(p.name.startswith(_FSDP_PREFIX) for p in path.iterdir())


def _checkpoints(scratch: Path) -> list[Path]:
    """checkpoint-N folders, newest (highest N) first."""
    found = [(int(m.group(1)), p) for p in scratch.iterdir()
             if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def prepare_scratch(scratch, run_fingerprint: str, state=None,
                    log: Callable[[str], None] = print) -> str | None:
    """Make `scratch` ready for a run stamped `run_fingerprint` (see `fingerprint`);
    return the checkpoint to resume from, or None for a clean start.

    A scratch folder stamped with another fingerprint (or none) is cleared: its
    checkpoints come from another config, base or data. Checkpoints that did not get
    to their end (a process killed mid-save) are removed, with a log line, so the newest
    complete one is resumed: given the newest folder whatever it holds, Trainer stops
    on a missing trainer_state.json or weights file, and every retry of the job would
    stop there again. `state`: accelerate's PartialState (the one TrainingArguments set
    up); only its main process changes files, every process gets the same answer.
    `scratch` must be the same path for every process.
    """
    if state is None:
        from accelerate import PartialState
        state = PartialState()
    scratch = Path(scratch)
    stamp = scratch / FINGERPRINT_FILE
    if state.is_main_process:
        same = stamp.is_file() and stamp.read_text().strip() == run_fingerprint
        if not same and scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True, exist_ok=True)
        stamp.write_text(run_fingerprint + "\n")
        for checkpoint in _checkpoints(scratch):
            if not is_complete_checkpoint(checkpoint):
                log(f"removing incomplete checkpoint {checkpoint} (no whole {TRAINER_STATE} or weights)")
                shutil.rmtree(checkpoint)
    state.wait_for_everyone()
    complete = [c for c in _checkpoints(scratch) if is_complete_checkpoint(c)]
    if complete:
        log(f"resuming from {complete[0]}")
        return str(complete[0])
    return None


def length_grouped_sampler(batch_size: int, dataset, seed: int):
    """transformers' LengthGroupedSampler (batches of similar length), with an order that
    depends on (`seed`, epoch) alone. Trainer's own draws it from the global torch RNG
    when an epoch starts, a state that a resumed run does not have (Trainer restores
    the RNG only after skipping to the resumed step): its resumed epochs then ran in
    another order, and ended with other weights than the uninterrupted run. Trainer
    calls `set_epoch` on it before every epoch, resumed ones included."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeeded(LengthGroupedSampler):
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = int(epoch)

        def __iter__(self):
            self.generator.manual_seed(seed + self.epoch)
            return super().__iter__()

    return EpochSeeded(batch_size, dataset=dataset, model_input_name="input_ids", generator=torch.Generator())


def subset_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Row indices of a seeded random subset of `limit` of `n` rows, in their original
    order (all rows when `limit` is None or >= n): what `max_*_samples` settings keep."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(limit), replace=False))


def training_device(device: str | None, bf16: bool | None) -> tuple[bool, bool]:
    """(cuda, bf16) of a trainer asked for `device` ("cpu", "cuda" or None: CUDA when
    available; one process per GPU is accelerate's job, so no "cuda:N") and `bf16`
    (None: on where CUDA supports it; an explicit True is kept on the CPU: autocast)."""
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or None, got {device!r}")
    cuda = resolve_device(device) == "cuda"
    return cuda, bool(bf16) if bf16 is not None else (cuda and torch.cuda.is_bf16_supported())


def library_versions(*extra: str) -> dict:
    """Versions of sidrec, torch, transformers, accelerate, peft, tokenizers and the
    `extra` modules (None for one that is not installed), for a run's report."""
    from .. import __version__

    versions = {"sidrec": __version__}
    for name in _LIBRARIES + tuple(extra):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def save_final(out_dir, model, tokenizer, report: dict, *, report_name: str, dtype=None,
               write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write the run's folder atomically: `save_pretrained` model (cast to `dtype`, e.g.
    the base's own, when given; safetensors), tokenizer, `report` as `report_name`
    (e.g. "sft_report.json"), and whatever `write_extra(folder)` adds (e.g. the prompt
    format). Anything failing on the way leaves the old folder as it was. Call it on the
    main process only."""
    if not report_name.endswith(".json") or Path(report_name).name != report_name:
        raise ValueError(f"report_name must be a plain *.json file name, got {report_name!r}")
    text = json.dumps(report, indent=1) + "\n"  # a report that cannot be written fails before the model
    if dtype is not None:
        model = model.to(dtype)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / report_name).write_text(text)
        if write_extra is not None:
            write_extra(tmp)
    return Path(out_dir)
