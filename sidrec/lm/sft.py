"""Supervised fine-tuning: a base LM learns to write the next item's SID (plus the
alignment tasks of `prompts.TASKS`).

Why transformers' `Trainer` and not TRL's `SFTTrainer`: SFTTrainer tokenizes
prompt + completion *jointly* and takes the completion to start where that diverges
from the prompt alone, so the prompt ids it trains on can differ from the ones
evaluation feeds (`prompts.encode_prompt`). Feeding it our pre-tokenized ids works, but
then it only adds another layer of defaults (its own EOS handling, padding, dataset
library) around the same Trainer. Here the dataset is our (input_ids, completion_mask)
pairs, the collator pads and masks, and Trainer brings the loop: cosine schedule with
warmup, gradient accumulation, evaluation, early stopping, checkpoints, bf16 on CUDA,
and `accelerate launch` (DDP / DeepSpeed) for free.

Output folder: `save_pretrained` model + tokenizer (SID tokens included), a greedy
`generation_config.json`, `prompt.json` (the prompt format it was trained on, which
everything downstream reads: `prompts.PromptFormat`) and `sft_report.json`. Written
beside `out_dir` and renamed.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import InputError, config_from_section
from .base import load_causal_lm
from .distill import level_token_ids, sasrec_soft_targets, soft_cross_entropy
from .prompts import TASKS, PromptBuilder, PromptFormat, encode_examples
from .run import (fingerprint, length_grouped_sampler, library_versions, prepare_scratch, save_final,
                  scratch_path, subset_rows, training_device)
from .vocab import add_sid_tokens, greedy_generation_config

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class SFTConfig:
    """Hyperparameters. `batch_size` is per process: the effective batch is
    batch_size x grad_accum x number of processes."""
    tasks: Sequence[str] = TASKS
    epochs: float = 2
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    batch_size: int = 64
    grad_accum: int = 1
    max_length: int = 256           # longer examples are dropped (cutting them would make
                                    # the training prompt differ from the evaluation prompt)
    eval_steps: int = 500
    early_stopping_patience: int = 3
    max_train_samples: int | None = None   # a seeded random subset of the train rows
    max_valid_samples: int | None = 512    # a seeded random subset of the valid rows
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Sequence[str] = LORA_TARGETS
    seed: int = 42
    bf16: bool | None = None        # None: on when CUDA supports it, off on CPU
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    eval_batch_size: int | None = None     # None: batch_size
    max_steps: int | None = None    # caps optimizer steps (tests, benchmarks); None: epochs
    group_by_length: bool = True    # batches of similar length: far less padding
    history_loss: bool = False      # next-item loss on every history item too (see thin_windows)
    # Distillation from the seed's SASRec (lm/distill.py): a batch's loss is (1 - w) x
    # its plain completion loss + w x the mean cross-entropy of its SID tokens against
    # the teacher's per-level distributions at `distill_temperature`. A batch with no
    # next-item example (alignment tasks only) keeps the plain loss. 0 = off (no
    # teacher needed). The validation loss that selects the checkpoint stays plain.
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    # Each history item's SID followed by the first N words of its title (0: SIDs only);
    # saved with the model as its prompt format (prompts.PromptFormat).
    history_title_words: int = 0

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        self.lora_target_modules = tuple(self.lora_target_modules)
        unknown = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or unknown:
            raise InputError("sft", f"tasks must be a non-empty subset of {list(TASKS)}, got "
                                    f"{list(self.tasks)}", key="tasks")
        for name in ("batch_size", "grad_accum", "eval_steps", "early_stopping_patience",
                     "logging_steps", "max_length"):
            if int(getattr(self, name)) < 1:
                raise InputError("sft", f"must be >= 1, got {getattr(self, name)}", key=name)
        if not 0 <= self.warmup_ratio <= 1:
            raise InputError("sft", f"must be in [0, 1], got {self.warmup_ratio}", key="warmup_ratio")
        if not 0 <= self.distill_weight <= 1:
            raise InputError("sft", f"must be in [0, 1], got {self.distill_weight}", key="distill_weight")
        if not self.distill_temperature > 0:
            raise InputError("sft", f"must be > 0, got {self.distill_temperature}", key="distill_temperature")
        PromptFormat(self.history_title_words)  # raises InputError naming the key

    @classmethod
    def from_dict(cls, params: dict) -> "SFTConfig":
        return config_from_section(cls, params, "sft")


# ------------------------------------------------------------------- data

class EncodedExamples(torch.utils.data.Dataset):
    """Encoded examples, compactly: each one's ids (int32) and where its completion
    starts (hundreds of thousands of examples as Python int lists would take ~40 bytes
    a token). Items are the dicts Trainer's length sampler and our collator read."""

    def __init__(self, ids: list[np.ndarray], prompt_lengths: np.ndarray, teacher=None):
        self.ids = ids
        self.prompt_lengths = np.asarray(prompt_lengths, dtype=np.int64)
        # Per example, None or (positions of its labelled SID tokens, their soft targets
        # float16 [n, C], their levels): what distillation needs (lm/distill.py).
        self.teacher = teacher

    @classmethod
    def encode(cls, tokenizer, examples, chunk: int = 8192, *, history_loss_levels: int | None = None,
               sid_token_ids=None, soft_targets=None) -> "EncodedExamples":
        """`history_loss_levels` = L (SID length): next-item examples also take the loss on
        every history item after the first (their SID tokens are the SID tokens of the
        prompt), which teaches every position of the history, as SASRec trains.

        `soft_targets` (distillation): per example None or float16 `[m, L, C]`, the
        teacher's distributions for its last m items' SID tokens (`distill.sasrec_soft_targets`,
        whose m are exactly the items that carry a loss here); needs `sid_token_ids`."""
        ids, prompt_lengths, teacher = [], [], []
        sid_lookup = None
        if history_loss_levels or soft_targets is not None:
            sid_lookup = np.zeros(len(tokenizer) + 1, dtype=bool)
            sid_lookup[np.asarray(list(sid_token_ids), dtype=np.int64)] = True
        for start in range(0, len(examples), chunk):
            part = examples[start:start + chunk]
            encoded = encode_examples(tokenizer, part)
            for offset, (example, (input_ids, mask)) in enumerate(zip(part, encoded)):
                arr = np.asarray(input_ids, dtype=np.int32)
                loss_start = len(mask) - sum(mask)
                if history_loss_levels and example.task == "next_item":
                    sid_positions = np.flatnonzero(sid_lookup[arr[:loss_start]])
                    if len(sid_positions) > history_loss_levels:  # more than one history item
                        loss_start = int(sid_positions[history_loss_levels - 1]) + 1
                ids.append(arr)
                prompt_lengths.append(loss_start)
                if soft_targets is not None:
                    teacher.append(_teacher_entry(arr, loss_start, sid_lookup, soft_targets[start + offset]))
        return cls(ids, np.asarray(prompt_lengths, dtype=np.int64),
                   teacher if soft_targets is not None else None)

    def select(self, keep: np.ndarray) -> "EncodedExamples":
        rows = np.flatnonzero(keep)
        teacher = None if self.teacher is None else [self.teacher[i] for i in rows]
        return EncodedExamples([self.ids[i] for i in rows], self.prompt_lengths[rows], teacher)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        ids = self.ids[i]
        item = {"input_ids": ids, "completion_mask": np.arange(len(ids)) >= self.prompt_lengths[i]}
        if self.teacher is not None:
            item["teacher"] = self.teacher[i]
        return item

    def n_tokens(self) -> int:
        return int(self.lengths().sum())

    def digest(self, h) -> None:
        """Feed every id and completion start into the hash `h`."""
        h.update(self.lengths().tobytes())
        h.update(self.prompt_lengths.tobytes())
        if self.ids:
            h.update(np.concatenate(self.ids).tobytes())
        for entry in self.teacher or ():   # a resumed run must have the same teacher
            if entry is not None:
                for part in entry:
                    h.update(part.tobytes())


def _teacher_entry(ids: np.ndarray, loss_start: int, sid_lookup: np.ndarray, targets):
    """(positions, soft targets [n, C], levels) of an example's labelled SID tokens, or
    None for an example without a teacher. The labelled SID tokens are the last m items'
    (every item has L tokens), in order, so they pair with the m x L rows of `targets`."""
    if targets is None:
        return None
    m, levels, codebook = targets.shape
    positions = np.flatnonzero(sid_lookup[ids])
    positions = positions[positions >= loss_start]
    if len(positions) != m * levels:
        raise ValueError(f"{len(positions)} labelled SID tokens but teacher targets for {m} items "
                         f"x {levels} levels: the rows and the examples are out of step")
    return (positions.astype(np.int64), np.ascontiguousarray(targets.reshape(m * levels, codebook)),
            np.tile(np.arange(levels, dtype=np.int64), m))


@dataclass
class CompletionCollator:
    """Right-pads a batch.

    labels: the ids on completion tokens (and eos), -100 on prompt and padding, so the
    loss is the completion's only. Right, not left, padding: with left padding the pad
    positions' attention rows are fully masked, and on CUDA (SDPA, bf16 autocast) their
    gradients came out NaN and wrecked the first run on an H100. logits_to_keep: the
    model computes logits only from the earliest loss position of the batch on: the LM
    head over every prompt position is wasted work, and on CPU with a small model it is
    most of the step (measured: 2.5x faster steps for hidden 128, 2 layers, 3.8k
    vocabulary). Batches of similar lengths (group_by_length) keep that window tight.
    """
    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, batch):
        width = max(len(b["input_ids"]) for b in batch)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        first_loss = width
        for row, b in enumerate(batch):
            ids = torch.as_tensor(np.asarray(b["input_ids"]), dtype=torch.long)
            mask = torch.as_tensor(np.asarray(b["completion_mask"]), dtype=torch.bool)
            input_ids[row, :len(ids)] = ids
            attention[row, :len(ids)] = 1
            labels[row, :len(ids)] = torch.where(mask, ids, torch.full_like(ids, -100))
            if mask.any():
                first_loss = min(first_loss, int(mask.nonzero()[0]))
        position_ids = torch.arange(width).expand(len(batch), width).clone()
        # Logits at positions first_loss - 1 .. width - 1 predict every labelled token.
        keep = max(2, width - first_loss + 1)
        out = {"input_ids": input_ids, "attention_mask": attention, "position_ids": position_ids,
               "labels": labels, "logits_to_keep": min(width, keep)}
        entries = [b.get("teacher") for b in batch]
        if any(e is not None for e in entries):
            codebook = next(e for e in entries if e is not None)[1].shape[1]
            levels = torch.full((len(batch), width), -1, dtype=torch.long)
            soft = torch.zeros((len(batch), width, codebook), dtype=torch.float32)
            for row, entry in enumerate(entries):
                if entry is not None:
                    positions, targets, level = (torch.as_tensor(a) for a in entry)
                    levels[row, positions] = level
                    soft[row, positions] = targets.float()
            out["teacher_levels"], out["teacher_targets"] = levels, soft
        return out


def completion_loss(outputs, labels, num_items_in_batch=None):
    """Token-level cross-entropy of the kept logits (the last k positions; see
    `CompletionCollator`). Trainer passes `num_items_in_batch`, the completion tokens of
    the whole accumulated (and, across processes, gathered) batch, so gradient
    accumulation and data parallelism weigh every token equally."""
    logits = outputs.logits
    k = logits.shape[1]
    predicted = logits[:, :-1].float()   # position p predicts token p + 1
    target = labels[:, labels.shape[1] - k + 1:]
    loss = torch.nn.functional.cross_entropy(
        predicted.reshape(-1, predicted.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = (target != -100).sum().clamp(min=1)
    return loss / num_items_in_batch


def thin_windows(samples):
    """With the loss on every history item, overlapping windows teach the same targets
    again and again: keep only the rows needed for every row's target to be in some
    kept row's loss, with the row's history (or its most recent part) before it.

    Rows form chains: a row continues the previous one (same user) when its history is
    the previous history plus the previous target, cut to the longest history (`stride`).
    Leave-one-out makes one sliding chain per user; prefix expansions of separate
    sequences (MiniOneRec's reconstructed Amazon train) make many short ones. Per chain,
    keep the last row and every `stride`-th row before it: a kept row's loss covers its
    own target and those of the `stride - 1` rows before it, at ~1/stride the tokens.
    Rows of a chain must be consecutive and in order, as the train tables write them."""
    stride = max(1, max(len(h) for h in samples["history"]))
    users, targets = samples["user"].tolist(), samples["target"].tolist()
    histories = [list(map(int, h)) for h in samples["history"]]
    chain = np.zeros(len(samples), dtype=np.int64)
    for i in range(1, len(samples)):
        continues = (users[i] == users[i - 1]
                     and histories[i] == (histories[i - 1] + [int(targets[i - 1])])[-stride:])
        chain[i] = chain[i - 1] if continues else chain[i - 1] + 1
    from_end = pd.Series(chain).groupby(chain, sort=False).cumcount(ascending=False).to_numpy()
    return samples[from_end % stride == 0].reset_index(drop=True)


def _example_soft_targets(teacher, rows, examples, sid_codes, config: SFTConfig) -> list:
    """Per example: the teacher's soft targets for a next-item example (the i-th such
    example is row i: `PromptBuilder.examples` keeps the rows' order), None otherwise."""
    targets = sasrec_soft_targets(teacher, list(rows["history"]), rows["target"].tolist(), sid_codes,
                                  history_loss=config.history_loss, temperature=config.distill_temperature)
    row = iter(targets)
    return [next(row) if e.task == "next_item" else None for e in examples]


def _subset(samples, limit: int | None, seed: int):
    """A seeded random subset of rows (kept in their original order)."""
    if limit is None or limit >= len(samples):
        return samples
    return samples.iloc[subset_rows(len(samples), limit, seed)].reset_index(drop=True)


def _encode(tokenizer, examples, max_length: int, name: str, log, **options) -> EncodedExamples:
    data = EncodedExamples.encode(tokenizer, examples, **options)
    fits = data.lengths() <= max_length
    if not fits.all():
        log(f"{name}: dropped {int((~fits).sum())} of {len(data)} examples longer than "
            f"max_length={max_length}")
        data = data.select(fits)
    if not len(data):
        raise InputError("sft", f"no {name} example fits in max_length={max_length}", key="max_length")
    return data


# ------------------------------------------------------------------- training

def _wrap_lora(model, config: SFTConfig, sid_token_ids: list[int]):
    """LoRA adapters on the projections, plus the new SID rows of the embedding: frozen
    at their mean init they would make every SID look alike, so they must train.
    `trainable_token_indices` trains just those rows (and follows a tied lm_head); an
    untied lm_head is trained whole (modules_to_save) so its SID rows learn too."""
    from peft import LoraConfig, get_peft_model

    tied = bool(model.config.get_text_config().tie_word_embeddings)
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout, target_modules=list(config.lora_target_modules),
        trainable_token_indices=sid_token_ids or None,
        modules_to_save=None if tied else ["lm_head"])
    return get_peft_model(model, lora)


def train_sft(base_dir, train_samples, valid_samples, sid_codes: np.ndarray, titles: Sequence[str],
              out_dir, config: SFTConfig | dict | None = None, scratch_dir=None,
              log: Callable[[str], None] = print, *, device: str | None = None, teacher=None) -> dict:
    """Fine-tune the model in `base_dir` on `train_samples` (+ alignment tasks), select
    the checkpoint with the lowest next-item loss on `valid_samples`, write it to `out_dir`.

    `scratch_dir` holds the trainer's checkpoints (resumable; removed on success); it
    must not be inside `out_dir` and, under `accelerate launch`, must be the same path
    for every process. Default: a hidden folder beside `out_dir`. `device`: "cpu" trains
    on the CPU even where CUDA is visible (a rule run with gpu=0 must not take a GPU
    that the scheduler gave to another job), "cuda" requires CUDA (RuntimeError
    without), None takes CUDA when available. `teacher`: the SASRec model that
    `distill_weight` > 0 distils from (trained on the same rows and catalogue). Returns
    the report that is also written to `out_dir/sft_report.json`.
    """
    from accelerate import PartialState
    from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    start = time.perf_counter()
    config = SFTConfig.from_dict(config) if isinstance(config, dict) else (config or SFTConfig())
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    scratch = scratch_path(out_dir, scratch_dir)
    cuda, bf16 = training_device(device, config.bf16)
    distilling = config.distill_weight > 0
    if distilling and teacher is None:
        raise InputError("sft", "distill_weight > 0 needs a teacher: the seed's SASRec checkpoint "
                                "(the sft rule passes it as --teacher)", key="distill_weight")
    if distilling and teacher.n_items != len(sid_codes):
        raise InputError("sft", f"the teacher SASRec scores {teacher.n_items} items but the SIDs "
                                f"cover {len(sid_codes)}: not the same catalogue", key="distill_weight")

    # TrainingArguments sets up the processes (`accelerate launch`, torchrun), so it comes
    # first; the step counts that depend on their number are filled in below.
    args = TrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size or config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr, weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1, lr_scheduler_type="cosine",
        eval_strategy="steps", eval_steps=config.eval_steps,
        save_strategy="steps", save_steps=config.eval_steps, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_strategy="steps", logging_steps=config.logging_steps, logging_first_step=True,
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        bf16=bf16, use_cpu=not cuda, seed=config.seed, data_seed=config.seed,
        remove_unused_columns=False, dataloader_num_workers=0, prediction_loss_only=True,
        report_to="none", disable_tqdm=True)
    state = PartialState()  # the one TrainingArguments set up
    if not state.is_main_process:
        log = lambda *_: None  # noqa: E731 - one process reports
    set_seed(config.seed)

    # Model and vocabulary. Train in float32 (bf16 via autocast on CUDA); save in the
    # base's own dtype.
    model, tokenizer = load_causal_lm(base_dir)
    save_dtype = model.dtype
    model = model.float()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # masked out of the loss by the collator
    sid_ids = add_sid_tokens(model, tokenizer, sid_codes, seed=config.seed)
    log(f"base {base_dir}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"vocabulary {len(tokenizer)} ({len(sid_ids)} SID tokens); {state.num_processes} process(es), "
        f"{'cuda' if cuda else 'cpu'}, bf16 {bool(bf16)}, {torch.get_num_threads()} CPU thread(s)")

    # Examples: the tasks on the training rows; validation is the next-item task only,
    # the one that is evaluated. Every process builds the same, deterministically.
    prompt_format = PromptFormat(config.history_title_words)
    builder = PromptBuilder(sid_codes, titles, prompt_format=prompt_format)
    train_rows = _subset(train_samples, config.max_train_samples, config.seed)
    if config.history_loss:
        before = len(train_rows)
        train_rows = thin_windows(train_rows)
        log(f"history_loss: {len(train_rows)} of {before} training rows cover every target")
    valid_rows = _subset(valid_samples, config.max_valid_samples, config.seed)
    train_examples = builder.examples(train_rows, config.tasks)
    valid_examples = builder.examples(valid_rows, ("next_item",))
    per_task = {t: sum(e.task == t for e in train_examples) for t in config.tasks}
    train_options = ({"history_loss_levels": sid_codes.shape[1], "sid_token_ids": sid_ids}
                     if config.history_loss else {})
    if distilling:
        started = time.perf_counter()
        train_options["sid_token_ids"] = sid_ids
        train_options["soft_targets"] = _example_soft_targets(teacher, train_rows, train_examples,
                                                              sid_codes, config)
        log(f"distillation: teacher targets for {sum(t is not None for t in train_options['soft_targets'])} "
            f"examples in {time.perf_counter() - started:.1f}s (weight {config.distill_weight}, "
            f"temperature {config.distill_temperature})")
    train = _encode(tokenizer, train_examples, config.max_length, "train", log, **train_options)
    valid = _encode(tokenizer, valid_examples, config.max_length, "valid", log)
    del train_examples, valid_examples  # the encoded ids are all that is needed now
    log(f"examples: train {len(train)} {per_task}, valid {len(valid)}; "
        f"train tokens per epoch {train.n_tokens()}")

    if config.lora:
        model = _wrap_lora(model, config, sid_ids)

    # Steps. Warmup is set in steps: TrainingArguments reads a float warmup < 1 as a
    # ratio but 1.0 as "one step". Evaluation (and the checkpoint it selects) happens at
    # least once, at the end, even for runs shorter than eval_steps.
    per_step = config.batch_size * config.grad_accum * state.num_processes
    steps_per_epoch = max(1, math.ceil(len(train) / per_step))
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    args.warmup_steps = math.ceil(total_steps * config.warmup_ratio)
    args.eval_steps = args.save_steps = min(config.eval_steps, total_steps)

    resume = prepare_scratch(scratch, fingerprint(asdict(config), base_dir, (train, valid)), state, log)

    step_ends: list[float] = []

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                log(json.dumps({"step": state.global_step, **logs}))

        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    token_ids = level_token_ids(tokenizer, sid_codes) if distilling else None

    class SeededTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Training batches with teacher targets mix in the soft loss; evaluation
            # batches have none, so the selection criterion is the plain loss.
            levels, soft = inputs.pop("teacher_levels", None), inputs.pop("teacher_targets", None)
            if levels is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            hard = completion_loss(outputs, labels, num_items_in_batch)
            loss = ((1 - config.distill_weight) * hard
                    + config.distill_weight * soft_cross_entropy(outputs.logits, soft, levels, token_ids))
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            # Batch order by (seed, epoch) only: a resumed run trains on the same batches.
            if not config.group_by_length:
                return super()._get_train_sampler(train_dataset)
            return length_grouped_sampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                          train_dataset if train_dataset is not None else self.train_dataset,
                                          config.seed)

    trainer = SeededTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=valid, processing_class=tokenizer,
        data_collator=CompletionCollator(tokenizer.pad_token_id, pad_to_multiple_of=8 if cuda else None),
        compute_loss_func=completion_loss,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience),
                   LogCallback()])
    trainer.remove_callback(PrinterCallback)  # LogCallback reports through `log` instead
    result = trainer.train(resume_from_checkpoint=resume)

    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.lora:
        model = model.merge_and_unload()
    model.generation_config = greedy_generation_config(tokenizer, np.asarray(sid_codes).shape[1])
    seconds = time.perf_counter() - start
    # Peak memory of every process's GPU (ZeRO shards differ little, DDP not at all).
    from accelerate.utils import gather_object
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
    peaks = gather_object([peak]) if state.num_processes > 1 else [peak]
    history = trainer.state.log_history  # includes what a resumed run logged before
    runtime = result.metrics.get("train_runtime")
    # Steady-state speed: the median optimizer step (first steps, evaluations and
    # checkpoints excluded by the median), for benchmarks across process counts.
    step_seconds = float(np.median(np.diff(step_ends))) if len(step_ends) > 2 else None
    tokens_per_step = trainer.state.num_input_tokens_seen / max(1, trainer.state.global_step)
    report = {
        "base": str(base_dir),
        "config": asdict(config) | {"tasks": list(config.tasks),
                                    "lora_target_modules": list(config.lora_target_modules)},
        "longest_history": int(max(len(h) for h in train_rows["history"])),
        "examples": {"train": len(train), "valid": len(valid), "train_per_task": per_task},
        "distilled_from": None if not distilling else {"teacher": "sasrec", "n_items": int(teacher.n_items),
                                                       "weight": config.distill_weight,
                                                       "temperature": config.distill_temperature},
        "sid_tokens": len(sid_ids),
        "vocabulary": len(tokenizer),
        "processes": state.num_processes,
        "device": "cuda" if cuda else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "bf16": bool(bf16),
        "steps": trainer.state.global_step,
        "planned_steps": total_steps,
        "effective_batch": per_step,
        "train_loss": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "eval_loss": [{"step": h["step"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        "best_eval_loss": trainer.state.best_metric,
        "best_checkpoint_step": _step_of(trainer.state.best_model_checkpoint),
        "resumed": _resume_note(resume, cuda, state.num_processes),
        "train_tokens_seen": trainer.state.num_input_tokens_seen,
        "train_seconds": runtime,
        "train_tokens_per_second": trainer.state.num_input_tokens_seen / runtime if runtime else None,
        "seconds": seconds,
        "median_step_seconds": step_seconds,
        "steady_samples_per_second": per_step / step_seconds if step_seconds else None,
        "steady_tokens_per_second": tokens_per_step / step_seconds if step_seconds else None,
        "peak_gpu_memory_gib": peaks,
        "versions": library_versions(),
    }
    if state.is_main_process:
        save_final(out_dir, model, tokenizer, report, report_name="sft_report.json", dtype=save_dtype,
                   write_extra=prompt_format.write)
        shutil.rmtree(scratch, ignore_errors=True)
        log(f"wrote {out_dir} in {seconds:.1f}s (best eval loss {report['best_eval_loss']})")
    state.wait_for_everyone()
    return report


def _resume_note(resume: str | None, cuda: bool, processes: int) -> dict | None:
    """What the report says of a run resumed from a checkpoint (None: not resumed).
    The batches (seeded per epoch), optimizer, scheduler and RNG state are those of the
    uninterrupted run; on one CPU process that gives the same weights bit for bit
    (tests/test_faults.py); CUDA kernels and several processes' reductions are not
    bit-deterministic, so there it is the same run up to float rounding."""
    if resume is None:
        return None
    exact = not cuda and processes == 1
    return {"from_checkpoint": Path(resume).name, "from_step": _step_of(resume),
            "reproduces_uninterrupted": exact,
            "why": ("one CPU process: same batches, optimizer and RNG state, same weights bit for bit" if exact
                    else "same batches, optimizer and RNG state; CUDA or multi-process reductions are not "
                         "bit-deterministic, so weights match only up to float rounding")}


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[-1])
    except ValueError:
        return None
