"""How much learning signal each RL reward mix gives: the fraction of GRPO groups with
zero advantage (every rollout of the group gets the same total reward, so the group
teaches nothing), for several reward mixes and both rollout kinds, on the SAME rollouts.

It times library functions only (`GroupRollout.decode`, `rewards.reward_values`) on a
model folder the DAG built (results/DATASET/sft or rl); it trains nothing.

    python bench/rl_reward_mix.py --results results/ml-100k --model sft \
        --samples 512 --generations 16 --out bench/results/reward_mix_ml100k.json

Per rollout kind: decode seconds per group; per mix: zero-advantage fraction, mean
reward, and the seconds the reward functions take per group (the `reward` share of an
RL step beside rollout and update).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

# hit+rank is MiniOneRec's reward; the others add the dense prefix or similarity credit.
MIXES = {
    "hit": {"hit": 1.0},
    "hit+rank": {"hit": 1.0, "rank": 1.0},
    "prefix": {"prefix": 1.0},
    "hit+rank+0.5prefix": {"hit": 1.0, "rank": 1.0, "prefix": 0.5},
    "similarity": {"similarity": 1.0},
    "hit+rank+0.5prefix+0.5similarity": {"hit": 1.0, "rank": 1.0, "prefix": 0.5, "similarity": 0.5},
}


def zero_advantage_fraction(total: np.ndarray) -> float:
    """total: float [groups, G]. A group with no spread has zero advantage everywhere."""
    return float((np.ptp(total, axis=1) <= 1e-9).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results/DATASET or results/DATASET/seed-S")
    ap.add_argument("--model", default="sft", help="model folder under --results (sft or rl)")
    ap.add_argument("--samples", type=int, default=512, help="train rows (a seeded random subset)")
    ap.add_argument("--generations", type=int, default=16, help="G, rollouts per group")
    ap.add_argument("--temperature", type=float, default=1.0, help="for sample rollouts")
    ap.add_argument("--batch-size", type=int, default=64, help="groups per decoder forward")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch
    from sidrec.data.tables import read_items, read_samples
    from sidrec.lm.base import load_causal_lm
    from sidrec.lm.prompts import PromptFormat
    from sidrec.lm.run import subset_rows
    from sidrec.recommend import Recommender
    from sidrec.rl.rewards import reward_values, unit_rows
    from sidrec.rl.rollout import GroupRollout
    from sidrec.results import ResultsFolder
    from sidrec.stages.rl import read_item_vectors
    from sidrec.sid import read_sid_json

    run = ResultsFolder.find(args.results)
    items = read_items(run.items)
    codes = read_sid_json(run.sid, n_items=len(items))
    unit_vectors = unit_rows(read_item_vectors((run.data_root or run.root) / "embeddings.npy", len(items)))
    train = read_samples(run.data / "train.parquet", len(items))
    rows = subset_rows(len(train), args.samples, args.seed)
    train = train.iloc[rows].reset_index(drop=True)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model, tokenizer = load_causal_lm(run.root / args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device)
    catalogue = Recommender(model, tokenizer, np.asarray(codes), items["title"].tolist(),
                            PromptFormat.read(run.root / args.model))
    heads = [catalogue.builder.eval_prompt(h) for h in train["history"]]
    targets = train["target"].to_numpy()
    G = args.generations

    report = {"results": str(run.root), "model": args.model, "device": device,
              "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "samples": len(heads), "generations": G, "temperature": args.temperature,
              "torch": torch.__version__, "rollouts": {}}
    for kind in ("beam", "sample"):
        rollout = GroupRollout(tokenizer, catalogue.trie, G, kind=kind, temperature=args.temperature,
                               batch_size=args.batch_size, seed=args.seed)
        rollout.decode(model, heads[:min(8, len(heads))])  # warm-up (kernels, allocator)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        _, got, ranks = rollout.decode(model, heads)
        if device == "cuda":
            torch.cuda.synchronize()
        decode_s = time.perf_counter() - start
        flat = dict(items=got.reshape(-1), targets=np.repeat(targets, G),
                    groups=np.repeat(np.arange(len(heads)), G), ranks=ranks.reshape(-1), codes=codes,
                    unit_vectors=unit_vectors)
        mixes = {}
        for name, weights in MIXES.items():
            start = time.perf_counter()
            total = sum(w * reward_values(r, **flat) for r, w in weights.items()).reshape(-1, G)
            reward_s = time.perf_counter() - start
            mixes[name] = {"weights": weights, "zero_advantage_fraction": zero_advantage_fraction(total),
                           "mean_reward": float(total.mean()),
                           "reward_ms_per_group": 1e3 * reward_s / len(heads)}
        hit_groups = float((got == targets[:, None]).any(1).mean())
        report["rollouts"][kind] = {"decode_ms_per_group": 1e3 * decode_s / len(heads),
                                    "groups_with_a_hit": hit_groups,
                                    "distinct_items_per_group": float(np.mean([len(set(g)) for g in got])),
                                    "mixes": mixes}
        print(f"{kind}: {1e3 * decode_s / len(heads):.2f} ms/group, {hit_groups:.3f} of groups hit; " +
              "; ".join(f"{n} zero-adv {m['zero_advantage_fraction']:.3f}" for n, m in mixes.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
