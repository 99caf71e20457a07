"""GRPO after SFT: sft/ -> rl/, with TRL's `GRPOTrainer`.

What is ours and what is TRL's: TRL brings the loop (group-normalised advantages,
clipped policy loss, k3 KL to the frozen SFT model, cosine schedule, gradient
accumulation, checkpoints, `accelerate launch` / DeepSpeed). We bring the rollouts
(`rollout.GroupRollout` on the trie decoder: every rollout is a catalogue item), the
rewards (`rewards`: by each row's own target, never by prompt text), the data (the
SFT/evaluation prompt from the one `PromptBuilder`, with each row's target item as a
column) and the selection: every `eval_steps` the model is decoded on a fixed valid
subset with the same batched decoder, and rl/ is the step with the best valid NDCG@k,
step 0 (the SFT model itself) included. If no step beats SFT, rl/ is the SFT model and
the report says so.

Output folder: `save_pretrained` model + tokenizer + the SFT's greedy generation config,
and `rl_report.json` (per logged step: mean reward of each kind, the fraction of groups
with zero reward spread, i.e. no learning signal, KL, loss, rollout and update seconds;
valid NDCG@k per evaluation).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import InputError, config_from_section
from ..io import atomic_dir
from ..lm.base import load_causal_lm
from ..decode.beam import constrained_topk
from ..lm.prompts import PromptBuilder, PromptFormat, encode_prompt
from ..lm.run import fingerprint, library_versions, prepare_scratch, scratch_path, subset_rows, training_device
from ..metrics import ndcg_at_k
from .rewards import REWARDS, trl_reward_functions
from .rollout import ROLLOUTS, GroupRollout, decoding
from .trie_logprobs import TrieLogProbs, trie_grpo_trainer

# The rows RL trains on: next-item prompts of the train split, and (MiniOneRec's
# alignment rows) an item's title -> its SID.
RL_TASKS = ("next_item", "title_to_sid")
LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")
LOGPROBS = ("full", "trie")
SCALE_REWARDS = ("group", "batch", "none")
BEST_DIR, BEST_FILE, VALID_LOG, TRAINED_FILE = "best", "best.json", "valid.jsonl", "trained.json"
REPORT_NAME = "rl_report.json"


@dataclass
class RLConfig:
    """Hyperparameters. A step trains on `prompts_per_step` rows x `num_generations`
    rollouts each, over all processes and accumulation steps."""
    tasks: Sequence[str] = ("next_item",)
    rewards: dict = field(default_factory=lambda: {"hit": 1.0, "rank": 1.0})
    rollout: str = "beam"
    temperature: float = 1.0        # sample rollouts only (beams ignore it)
    # Token log-probabilities in the loss and KL: over the full vocabulary (TRL's), or
    # renormalised over the codes the trie allows after each prefix (rl/trie_logprobs.py).
    logprobs: str = "full"
    num_generations: int = 16
    prompts_per_step: int = 64
    grad_accum: int = 1
    beta: float = 1e-3
    loss_type: str = "dapo"
    # Advantage = (reward - group mean) / std over: the group (TRL's default), the whole
    # batch, or none. Per group, a tiny spread (a dense reward in a group without a hit)
    # is blown up to the size of a hit's.
    scale_rewards: str = "group"
    epsilon: float = 0.2
    lr: float = 1e-5
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 2
    max_steps: int | None = None
    max_samples: int | None = None  # a seeded random subset of the RL rows
    eval_steps: int = 50
    # Stop after this many valid checks in a row without a new best (None: run every step).
    # A run whose valid NDCG only falls (Industrial, bench/RESULTS.md) then costs
    # `patience` checks, not the whole schedule; rl/ is the best step either way.
    patience: int | None = None
    max_valid_samples: int | None = 512
    valid_k: int = 10
    valid_beam_width: int = 20
    rollout_batch_size: int = 64    # groups per decoder forward
    logging_steps: int = 10
    bf16: bool | None = None        # None: on when CUDA supports it, off on CPU
    seed: int = 42

    def __post_init__(self):
        self.tasks = tuple(self.tasks)
        self.rewards = {str(k): float(v) for k, v in dict(self.rewards).items()}
        bad = [t for t in self.tasks if t not in RL_TASKS]
        if not self.tasks or bad:
            raise InputError("rl", f"tasks must be a non-empty subset of {list(RL_TASKS)}, got "
                                   f"{list(self.tasks)}", key="tasks")
        unknown = sorted(set(self.rewards) - set(REWARDS))
        if unknown:
            raise InputError("rl", f"unknown reward(s) {unknown}; expected some of {list(REWARDS)}",
                             key="rewards")
        if not any(self.rewards.values()):
            raise InputError("rl", "every reward weight is 0: at least one must count", key="rewards")
        for key, choices in (("rollout", ROLLOUTS), ("logprobs", LOGPROBS), ("scale_rewards", SCALE_REWARDS),
                             ("loss_type", LOSS_TYPES)):
            if getattr(self, key) not in choices:
                raise InputError("rl", f"must be one of {list(choices)}, got {getattr(self, key)!r}", key=key)
        if int(self.num_generations) < 2:
            raise InputError("rl", f"must be >= 2 (GRPO compares rollouts within a group), got "
                                   f"{self.num_generations}", key="num_generations")
        if self.beta < 0:
            raise InputError("rl", f"must be >= 0, got {self.beta}", key="beta")
        if not self.temperature > 0:
            raise InputError("rl", f"must be > 0, got {self.temperature}", key="temperature")
        if not self.lr > 0:
            raise InputError("rl", f"must be > 0, got {self.lr}", key="lr")
        if not 0 <= self.warmup_ratio <= 1:
            raise InputError("rl", f"must be in [0, 1], got {self.warmup_ratio}", key="warmup_ratio")
        if self.patience is not None and int(self.patience) < 1:
            raise InputError("rl", f"must be >= 1 or null, got {self.patience}", key="patience")
        for name in ("prompts_per_step", "grad_accum", "eval_steps", "valid_k", "valid_beam_width",
                     "rollout_batch_size", "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise InputError("rl", f"must be >= 1, got {getattr(self, name)}", key=name)

    @classmethod
    def from_dict(cls, params: dict) -> "RLConfig":
        return config_from_section(cls, params, "rl")


# ------------------------------------------------------------------- data

def rl_rows(builder: PromptBuilder, train_samples, tasks: Sequence[str], limit: int | None,
            seed: int) -> dict:
    """Columns of the RL dataset: `prompt` (the SFT/evaluation prompt text), `target`
    (the row's own item id: what the rewards read), `sample` (row id), `task`."""
    prompts, targets, tasks_col = [], [], []
    for task in dict.fromkeys(tasks):
        if task == "next_item":
            for history, target in zip(train_samples["history"], train_samples["target"]):
                prompts.append(builder.eval_prompt(history))
                targets.append(int(target))
        else:  # title_to_sid
            for item in range(builder.n_items):
                prompts.append(builder.title_to_sid(item).prompt)
                targets.append(item)
        tasks_col.extend([task] * (len(prompts) - len(tasks_col)))
    rows = subset_rows(len(prompts), limit, seed)
    return {"prompt": [prompts[i] for i in rows], "target": [targets[i] for i in rows],
            "sample": rows.tolist(), "task": [tasks_col[i] for i in rows]}


def valid_ndcg(model, tokenizer, builder: PromptBuilder, trie, valid_rows, *, k: int, beam_width: int,
               batch_size: int = 64) -> float:
    """NDCG@k of `model` on `valid_rows` with the trie decoder (beam search of
    `beam_width`, not widened: a fast, fixed yardstick for choosing steps)."""
    prompts = [encode_prompt(tokenizer, builder.eval_prompt(h)) for h in valid_rows["history"]]
    with decoding(model):
        result = constrained_topk(model, prompts, trie, k=k, beam_width=max(k, beam_width),
                                  batch_size=batch_size, pad_token_id=tokenizer.pad_token_id, exact=False)
    return ndcg_at_k(result.items, valid_rows["target"].to_numpy(), k)


# ------------------------------------------------------------------- saving

def _save_copy(model, tokenizer, path, dtype) -> None:
    """save_pretrained of a copy of the weights in `dtype` (the training model stays as
    it is), atomically."""
    converted: dict[int, torch.Tensor] = {}  # by storage: tied weights stay one tensor
    state = {}
    for key, value in model.state_dict().items():
        ptr = value.data_ptr()
        if ptr not in converted:
            converted[ptr] = value.detach().to(dtype) if value.is_floating_point() else value
        state[key] = converted[ptr]
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def _write_output(out_dir, source_dir, report: dict, prompt_format: PromptFormat) -> None:
    """out_dir := the model folder `source_dir` (best step, or sft/) + the report + the
    prompt format (a best step's folder holds weights and tokenizer only)."""
    text = json.dumps(report, indent=1) + "\n"
    with atomic_dir(out_dir) as tmp:
        for f in Path(source_dir).iterdir():
            if f.is_file() and not f.name.endswith("_report.json"):
                shutil.copy2(f, tmp / f.name)
        prompt_format.write(tmp)
        (tmp / REPORT_NAME).write_text(text)


# ------------------------------------------------------------------- training

def train_rl(sft_dir, train_samples, valid_samples, sid_codes: np.ndarray, titles: Sequence[str],
             out_dir, config: RLConfig | dict | None = None, scratch_dir=None,
             log: Callable[[str], None] = print, *, device: str | None = None,
             item_vectors: np.ndarray | None = None) -> dict:
    """GRPO on the model in `sft_dir` (a save_pretrained folder with SID tokens); writes
    `out_dir` (see the module docstring) and returns its report. `scratch_dir`: the
    trainer's resumable checkpoints and the best step so far (removed on success);
    `device` as in `sft.train_sft`; `item_vectors` [n_items, dim]: what the similarity
    reward compares (needed only when it has a weight)."""
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import TrainerCallback, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    start = time.perf_counter()
    config = RLConfig.from_dict(config) if isinstance(config, dict) else (config or RLConfig())
    sft_dir, out_dir = Path(sft_dir), Path(out_dir)
    scratch = scratch_path(out_dir, scratch_dir)
    cuda, bf16 = training_device(device, config.bf16)

    # A step's rows split evenly over processes and accumulation steps, in whole groups
    # (a group must be decoded by one process: GroupRollout checks it).
    processes = int(os.environ.get("WORLD_SIZE", 1))
    share = processes * config.grad_accum
    if config.prompts_per_step % share:
        raise InputError("rl", f"must be a multiple of processes x grad_accum = {share}, got "
                               f"{config.prompts_per_step}", key="prompts_per_step")
    per_device = config.prompts_per_step // share * config.num_generations

    G, L = config.num_generations, int(np.asarray(sid_codes).shape[1])
    args = GRPOConfig(
        output_dir=str(scratch), per_device_train_batch_size=per_device,
        gradient_accumulation_steps=config.grad_accum, num_generations=G,
        max_completion_length=L + 1, temperature=config.temperature if config.rollout == "sample" else 1.0,
        learning_rate=config.lr, weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="cosine", num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        beta=config.beta, loss_type=config.loss_type, epsilon=config.epsilon, scale_rewards=config.scale_rewards,
        save_strategy="steps", save_steps=config.eval_steps, save_total_limit=1,
        logging_strategy="steps", logging_steps=config.logging_steps, logging_first_step=True,
        bf16=bf16, use_cpu=not cuda, seed=config.seed, data_seed=config.seed,
        remove_unused_columns=False, dataloader_num_workers=0, report_to="none", disable_tqdm=True,
        log_completions=False)
    state = PartialState()
    if not state.is_main_process:
        log = lambda *_: None  # noqa: E731
    set_seed(config.seed)

    model, tokenizer = load_causal_lm(sft_dir)
    save_dtype = model.dtype
    model = model.float()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cuda:
        model = model.to(state.device)
    from ..recommend import Recommender  # builder + trie over the model's own tokenizer
    prompt_format = PromptFormat.read(sft_dir)  # SFT's prompts, kept in the output folder too
    catalogue = Recommender(model, tokenizer, np.asarray(sid_codes), list(titles), prompt_format)
    builder, trie = catalogue.builder, catalogue.trie

    columns = rl_rows(builder, train_samples, config.tasks, config.max_samples, config.seed)
    if not columns["prompt"]:
        raise InputError("rl", "no RL rows (empty train split?)", key="tasks")
    train = Dataset.from_dict(columns)
    valid_rows = valid_samples.iloc[subset_rows(len(valid_samples), config.max_valid_samples,
                                                config.seed)].reset_index(drop=True)
    rows_per_step = config.prompts_per_step
    steps_per_epoch = max(1, math.ceil(len(train) / rows_per_step))
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    args.warmup_steps = math.ceil(total_steps * config.warmup_ratio)
    args.save_steps = min(config.eval_steps, total_steps)
    log(f"sft {sft_dir}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
        f"{len(train)} RL rows {dict(zip(*np.unique(columns['task'], return_counts=True)))}, "
        f"{total_steps} steps of {rows_per_step} rows x {G} {config.rollout} rollouts; "
        f"valid subset {len(valid_rows)}; {processes} process(es), {'cuda' if cuda else 'cpu'}, bf16 {bool(bf16)}")

    rollout = GroupRollout(tokenizer, trie, G, kind=config.rollout, temperature=config.temperature,
                           batch_size=config.rollout_batch_size, seed=config.seed + state.process_index)
    reward_funcs, weights = trl_reward_functions(config.rewards, sid_codes, item_vectors)
    args.reward_weights = weights

    data_digest = json.dumps(columns, sort_keys=True).encode()
    resume = prepare_scratch(scratch, fingerprint(asdict(config) | {"tasks": list(config.tasks)}, sft_dir,
                                                  (data_digest,)), state, log)
    best_file = scratch / BEST_FILE
    # Valid checks also go to scratch, so that a resumed run's report lists those made
    # before the interruption (the step-0 check is not repeated on resume).
    valid_log = scratch / VALID_LOG
    evaluations: list[dict] = []
    if resume is not None and valid_log.is_file():
        evaluations = [json.loads(line) for line in valid_log.read_text().splitlines() if line.strip()]
    elif state.is_main_process and valid_log.exists():
        valid_log.unlink()  # a clean start
    step_times: list[dict] = []
    stopped: dict = {}

    def evaluate(step: int) -> None:
        """Valid NDCG@k at `step`; the best step's model is kept in scratch/best (main
        process; ZeRO-2 leaves every process the full weights, so one decodes)."""
        if state.is_main_process:
            unwrapped = trainer.accelerator.unwrap_model(trainer.model) if step else model
            t0 = time.perf_counter()
            value = valid_ndcg(unwrapped, tokenizer, builder, trie, valid_rows, k=config.valid_k,
                               beam_width=config.valid_beam_width, batch_size=config.rollout_batch_size)
            entry = {"step": step, f"valid_ndcg@{config.valid_k}": value, "seconds": time.perf_counter() - t0}
            evaluations.append(entry)
            with open(valid_log, "a") as f:
                f.write(json.dumps(entry) + "\n")
            best = json.loads(best_file.read_text()) if best_file.is_file() else None
            log(f"step {step}: valid NDCG@{config.valid_k} {value:.4f} (best so far: "
                f"{'none' if best is None else round(best['value'], 4)})")
            if best is None or value > best["value"]:
                if step:
                    _save_copy(unwrapped, tokenizer, scratch / BEST_DIR, save_dtype)
                best_file.write_text(json.dumps({"step": step, "value": value}) + "\n")
        state.wait_for_everyone()

    class StepCallback(TrainerCallback):
        def on_step_begin(self, args, st, control, **kwargs):
            self.t0, self.r0 = time.perf_counter(), rollout.seconds

        def on_step_end(self, args, st, control, **kwargs):
            total = time.perf_counter() - self.t0
            rolled = rollout.seconds - self.r0
            step_times.append({"step": st.global_step, "seconds": total, "rollout_seconds": rolled,
                               "update_seconds": total - rolled})
            if st.global_step % config.eval_steps == 0 or st.global_step >= st.max_steps:
                evaluate(st.global_step)
                if config.patience and st.global_step < st.max_steps:
                    # every process reads the same file after evaluate's barrier
                    best_step = json.loads(best_file.read_text())["step"]
                    if (st.global_step - best_step) // config.eval_steps >= config.patience:
                        stopped["step"] = st.global_step
                        log(f"step {st.global_step}: {config.patience} valid checks without a new best "
                            f"(best: step {best_step}); stopping (rl.patience)")
                        control.should_training_stop = True

        def on_log(self, args, st, control, logs=None, **kwargs):
            if logs:
                log(json.dumps({"step": st.global_step, **logs}))

    trainer_class = GRPOTrainer
    if config.logprobs == "trie":
        trainer_class = trie_grpo_trainer(TrieLogProbs(trie, model.get_output_embeddings().weight.shape[0]))
    trainer = trainer_class(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train,
                          processing_class=tokenizer, rollout_func=rollout, callbacks=[StepCallback()])
    trainer.remove_callback(PrinterCallback)
    if resume is None or not best_file.is_file():
        evaluate(0)  # the SFT model: the step to beat
    # A run stopped after training ended (by patience or at max_steps) but before rl/ was
    # written must not train again: Trainer would take another step from the last
    # checkpoint, and a patience stop would be forgotten. What the report needs from the
    # training is kept in scratch when it ends.
    trained_file = scratch / TRAINED_FILE
    if trained_file.is_file():
        trained = json.loads(trained_file.read_text())
        log(f"training had ended (step {trained['steps']}) before the interruption: writing rl/ from its "
            f"best step")
    else:
        result = trainer.train(resume_from_checkpoint=resume)
        trained = {"steps": trainer.state.global_step, "stopped_early_at": stopped.get("step"),
                   "log_history": trainer.state.log_history, "step_seconds": step_times,
                   "train_seconds": result.metrics.get("train_runtime")}
        if state.is_main_process:
            trained_file.write_text(json.dumps(trained) + "\n")

    seconds = time.perf_counter() - start
    report = None
    if state.is_main_process:
        best = json.loads(best_file.read_text())
        history = trained["log_history"]
        step_times = trained["step_seconds"]
        report = {
            "sft": str(sft_dir),
            "config": asdict(config) | {"tasks": list(config.tasks)},
            "rows": {"train": len(train), "valid_subset": len(valid_rows),
                     "per_task": {t: columns["task"].count(t) for t in config.tasks}},
            "processes": state.num_processes, "device": "cuda" if cuda else "cpu", "bf16": bool(bf16),
            "cpu_threads": torch.get_num_threads(),
            "steps": trained["steps"], "planned_steps": total_steps,
            "stopped_early_at": trained["stopped_early_at"],
            "resumed_from": resume,
            "selected_step": best["step"],
            "selected_valid_ndcg": best["value"],
            "selected": "sft (no RL step beat it on valid)" if best["step"] == 0 else f"step {best['step']}",
            # one entry per step: a check repeated after a resume replaces the earlier one
            "valid": sorted({e["step"]: e for e in evaluations}.values(), key=lambda e: e["step"]),
            "log": [_log_entry(h) for h in history if "loss" in h or "reward" in h],
            "zero_advantage_fraction": _mean([h.get("frac_reward_zero_std") for h in history]),
            "step_seconds": step_times,
            "median_step_seconds": _median([s["seconds"] for s in step_times]),
            "median_rollout_seconds": _median([s["rollout_seconds"] for s in step_times]),
            "train_seconds": trained["train_seconds"],
            "seconds": seconds,
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "versions": library_versions("trl", "datasets"),
        }
        source = scratch / BEST_DIR if best["step"] else sft_dir
        _write_output(out_dir, source, report, prompt_format)
        shutil.rmtree(scratch, ignore_errors=True)
        log(f"wrote {out_dir} in {seconds:.1f}s: {report['selected']}, valid NDCG@{config.valid_k} "
            f"{best['value']:.4f}")
    state.wait_for_everyone()
    return report


_LOG_KEYS = ("loss", "reward", "reward_std", "frac_reward_zero_std", "kl", "learning_rate", "grad_norm", "step_time",
             "entropy")


def _log_entry(h: dict) -> dict:
    out = {"step": h.get("step")}
    for key, value in h.items():
        # profiling/...: TRL's own timings (each reward function, the log-probabilities)
        if key in _LOG_KEYS or key.startswith(("rewards/", "profiling/")):
            out[key] = value
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _median(values):
    return float(np.median(values)) if values else None
