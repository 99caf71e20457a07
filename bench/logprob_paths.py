"""Time GRPO's per-token log-probabilities two ways, in one process, on one model and
one batch (CPU):

  full  TRL's `GRPOTrainer._get_per_token_logps_and_entropies`: the model's forward as
        patched by TRL's fused LM head (log-probabilities over the full vocabulary; on
        the CPU every position of the sequence is scored, then the completion's kept)
  trie  our override (`sidrec.rl.trie_logprobs.trie_grpo_trainer`): logits of the
        completion's positions only (`logits_to_keep`), renormalised by `TrieLogProbs`
        over the codes the SID trie allows

Both are called on ONE trainer instance of the trie subclass (built as `rl.grpo.train_rl`
builds it, beta > 0, so TRL patches the policy and its reference model once each): "full"
is the base class's method, unbound, `GRPOTrainer._get_per_token_logps_and_entropies(
trainer, ...)`. Modes: `no_grad` (forward only on TRL's reference model, as for the KL's
reference log-probabilities) and `backward` (on the policy in train mode, entropy asked as
the policy loss asks, then `logps.sum().backward()`).
The paths alternate within each repeat (A B A B ...), after warm-up.

The batch: `--batch` sequences = batch/8 ml-100k train rows (the recbole wheel's copy)
x 8 rollouts each, prompts from the one `PromptBuilder` (history cut to max_history 20),
completions = a random catalogue item's 3 SID tokens + eos. Model: the untrained tiny LM
of config/config.yaml (`lm.tiny`, built by `build_tiny`) with the SID tokens added, over
random unique 3-level codes (256 a level) for the 1,682 items; or `--model-dir`, a local
HF causal-LM folder (the SID tokens are added if missing).

    .venv/bin/python bench/logprob_paths.py --repeats 20 --batch 128 --threads 2 \
        --out bench/results/logprob_paths/cpu_tiny.json
    # a local model folder instead (slow on a CPU)
    .venv/bin/python bench/logprob_paths.py --model-dir results/models/smollm2-135m --batch 8 --repeats 3
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from sidrec.data.movielens import load_ml100k  # noqa: E402
from sidrec.io import write_json  # noqa: E402
from sidrec.lm.base import build_tiny, load_causal_lm, save_model  # noqa: E402
from sidrec.lm.prompts import encode_prompt, tokenizer_corpus  # noqa: E402
from sidrec.lm.run import library_versions  # noqa: E402
from sidrec.lm.vocab import add_sid_tokens  # noqa: E402
from sidrec.recommend import Recommender  # noqa: E402
from sidrec.rl.trie_logprobs import TrieLogProbs, trie_grpo_trainer  # noqa: E402

G = 8  # rollouts per prompt (config/config.yaml rl.num_generations)


def random_codes(n: int, levels: int, k: int, seed: int) -> np.ndarray:
    flat = np.random.default_rng(seed).choice(k ** levels, size=n, replace=False)
    return np.stack([(flat // k ** (levels - 1 - d)) % k for d in range(levels)], 1).astype(np.int64)


def build(args, config: dict, tmp: Path):
    """(trainer, (input_ids, attention_mask, logits_to_keep), shapes): one TrieGRPOTrainer
    on the model (model folders and trainer output under `tmp`), and the padded batch."""
    from datasets import Dataset
    from trl import GRPOConfig
    from trl.trainer.utils import pad

    data = load_ml100k(max_history=config["datasets"]["ml-100k"]["max_history"])
    titles = data.items["title"].tolist()
    q = config["quantizer"]
    codes = random_codes(len(titles), q["levels"], q["codebook_size"], args.seed)
    model_dir = args.model_dir or build_tiny(tmp / "base", tokenizer_corpus(titles), config["lm"]["tiny"])
    model, tokenizer = load_causal_lm(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    add_sid_tokens(model, tokenizer, codes, seed=0)
    # saved and reloaded as SFT leaves it, so that TRL can build the reference model from the folder
    model, tokenizer = load_causal_lm(save_model(model.float(), tokenizer, tmp / "sft"))
    catalogue = Recommender(model, tokenizer, codes, titles)

    rng = np.random.default_rng(args.seed)
    rows = data.train.iloc[rng.choice(len(data.train), args.batch // G, replace=False)]
    prompts = [encode_prompt(tokenizer, catalogue.builder.eval_prompt(h)) for h in rows["history"]]
    items = rng.choice(len(titles), args.batch)
    completions = torch.cat([catalogue.trie.item_tokens[items],
                             torch.full((args.batch, 1), tokenizer.eos_token_id)], 1)
    prompt_ids = pad([torch.tensor(p) for p in prompts for _ in range(G)],
                     padding_value=tokenizer.pad_token_id, padding_side="left")
    prompt_mask = pad([torch.ones(len(p), dtype=torch.long) for p in prompts for _ in range(G)],
                      padding_value=0, padding_side="left")
    input_ids = torch.cat([prompt_ids, completions], 1)
    attention_mask = torch.cat([prompt_mask, torch.ones_like(completions)], 1)

    L = codes.shape[1]
    grpo_args = GRPOConfig(output_dir=str(tmp / "trainer"), per_device_train_batch_size=args.batch,
                           num_generations=G, max_completion_length=L + 1, beta=1e-3, use_cpu=True,
                           bf16=False, report_to="none", save_strategy="no", logging_strategy="no",
                           disable_tqdm=True, seed=args.seed)
    trainer_class = trie_grpo_trainer(TrieLogProbs(catalogue.trie, model.get_output_embeddings().weight.shape[0]))
    trainer = trainer_class(model=model, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                            args=grpo_args, train_dataset=Dataset.from_dict({"prompt": ["x"] * G}),
                            processing_class=tokenizer)
    trainer.model.train()  # as during GRPO; TRL keeps the reference model (beta > 0) in eval mode
    shapes = {"sequences": args.batch, "prompts": args.batch // G, "generations": G,
              "padded_length": input_ids.shape[1], "completion_length": completions.shape[1],
              "prompt_tokens_mean": float(np.mean([len(p) for p in prompts])),
              "prompt_tokens_max": max(len(p) for p in prompts), "vocab": model.get_output_embeddings().weight.shape[0],
              "parameters": sum(p.numel() for p in model.parameters()), "model": str(model_dir) if args.model_dir
              else {"tiny": config["lm"]["tiny"]}, "sid_levels": L, "items": len(titles)}
    return trainer, (input_ids, attention_mask, completions.shape[1]), shapes


def main(argv=None):
    from trl import GRPOTrainer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=128, help="sequences (a multiple of 8 generations)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dir", default=None, help="a local HF causal-LM folder instead of the tiny LM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PATH.json")
    args = p.parse_args(argv)
    if args.batch % G:
        p.error(f"--batch must be a multiple of {G}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    torch.manual_seed(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="logprob_paths_"))
    try:
        trainer, (ids, mask, keep), shapes = build(args, config, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the models are in memory by now
    # no_grad: the reference model's call (TRL's fused head there computes log-probs only);
    # backward: the policy's (its fused head computes log-probs and entropy)
    models = {"no_grad": trainer.ref_model, "backward": trainer.model}
    paths = {"full": lambda model, **kw: GRPOTrainer._get_per_token_logps_and_entropies(
                 trainer, model, ids, mask, keep, **kw),
             "trie": lambda model, **kw: trainer._get_per_token_logps_and_entropies(model, ids, mask, keep, **kw)}

    # Sanity (not a claim): renormalised over a subset, trie log-probs are >= full ones.
    # And TRL's fused head matches a plain full-vocabulary log_softmax of the same model's logits.
    with torch.no_grad():
        full, trie = paths["full"](trainer.model)[0], paths["trie"](trainer.model)[0]
        plain = trainer.model(input_ids=ids, attention_mask=mask).logits[:, -keep - 1:-1].float().log_softmax(-1)
        plain = plain.gather(-1, ids[:, -keep:, None])[..., 0]
    diff = trie - full
    sanity = {"min_trie_minus_full": diff.min().item(), "max_trie_minus_full": diff.max().item(),
              "trie_ge_full": bool((diff >= -1e-5).all()), "full_logp_mean": full.mean().item(),
              "trie_logp_mean": trie.mean().item(), "max_abs_full_minus_plain": (full - plain).abs().max().item()}
    print(f"sanity: trie - full per token in [{sanity['min_trie_minus_full']:.4g}, "
          f"{sanity['max_trie_minus_full']:.4g}] (trie >= full: {sanity['trie_ge_full']}); TRL full vs plain "
          f"log_softmax: max |diff| {sanity['max_abs_full_minus_plain']:.2g}")

    def once(name, mode):
        model = models[mode]
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        if mode == "no_grad":
            with torch.no_grad():
                paths[name](model)
        else:
            logps = paths[name](model, compute_entropy=True)[0]
            logps.sum().backward()
        return time.perf_counter() - t0

    results = {}
    for mode in ("no_grad", "backward"):
        times = {"full": [], "trie": []}
        for i in range(args.warmup + args.repeats):
            for name in ("full", "trie"):  # A B A B ...
                t = once(name, mode)
                if i >= args.warmup:
                    times[name].append(t)
        results[mode] = {}
        for name, ts in times.items():
            q1, med, q3 = np.percentile(ts, [25, 50, 75])
            results[mode][name] = {"median_s": med, "iqr_s": q3 - q1, "times_s": ts}
        results[mode]["ratio_full_over_trie"] = results[mode]["full"]["median_s"] / results[mode]["trie"]["median_s"]

    print(f"{shapes['sequences']} sequences x {shapes['padded_length']} tokens (completion "
          f"{shapes['completion_length']}), vocab {shapes['vocab']}, {args.threads} thread(s), "
          f"{args.repeats} repeats after {args.warmup} warm-up")
    print(f"{'mode':<10}{'path':<6}{'median ms':>11}{'IQR ms':>9}{'full/trie':>11}")
    for mode, r in results.items():
        for name in ("full", "trie"):
            ratio = f"{r['ratio_full_over_trie']:.2f}" if name == "full" else ""
            print(f"{mode:<10}{name:<6}{r[name]['median_s'] * 1e3:>11.2f}{r[name]['iqr_s'] * 1e3:>9.2f}{ratio:>11}")
    if args.out:
        write_json(args.out, {"versions": library_versions("trl"), "threads": args.threads,
                              "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed,
                              "shapes": shapes, "sanity": sanity, "results": results,
                              "command": " ".join(sys.argv)})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
