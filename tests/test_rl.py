"""RL (GRPO): rewards against hand-computed values, rewards by each row's own target,
catalogue-only rollouts, the one prompt builder, a short run that learns, selection on
valid, and bad settings stopped by name."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sidrec.decode import constrained_topk, sample_items
from sidrec.errors import InputError
from sidrec.lm.base import build_tiny, load_causal_lm, save_model
from sidrec.lm.prompts import PromptBuilder, encode_prompt, tokenizer_corpus
from sidrec.lm.vocab import add_sid_tokens
from sidrec.recommend import Recommender
from sidrec.rl.grpo import RLConfig, rl_rows, train_rl
from sidrec.rl.rewards import hit_reward, prefix_reward, rank_reward, similarity_reward, trl_reward_functions, unit_rows
from sidrec.rl.rollout import GroupRollout
from sidrec.rl.trie_logprobs import TrieLogProbs

N_ITEMS = 24
CODES = np.stack([np.arange(N_ITEMS) % 3, (np.arange(N_ITEMS) // 3) % 4, np.arange(N_ITEMS) // 12],
                 axis=1).astype(np.int64)
TITLES = [f"Film {i}" for i in range(N_ITEMS)]
TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=300, seed=0)


# ------------------------------------------------------------------- rewards

def test_hit_reward_is_one_exactly_on_the_target():
    np.testing.assert_array_equal(hit_reward([3, 4, 3], [3, 3, 5]), [1.0, 0.0, 0.0])


def test_rank_reward_matches_hand_computed_values():
    # Group 0 (4 rollouts): the hit at rank 1; wrong ones at ranks 0, 2, 3.
    # Group 1: no hit -> 0 throughout.
    items = [7, 5, 8, 9, 1, 2, 3, 4]
    targets = [5, 5, 5, 5, 6, 6, 6, 6]
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    ranks = [0, 1, 2, 3, 0, 1, 2, 3]
    norm = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    expected = [-(1 / math.log2(2)) / norm, 0.0, -(1 / math.log2(4)) / norm, -(1 / math.log2(5)) / norm,
                0, 0, 0, 0]
    np.testing.assert_allclose(rank_reward(items, targets, groups, ranks), expected, rtol=0, atol=1e-12)


def test_prefix_reward_counts_shared_leading_levels():
    # item 5 = (2, 1, 0); item 2 = (2, 0, 0) shares level 0 only (level 2 matches too, but
    # after a mismatch: not a prefix); item 17 = (2, 1, 1) shares two levels.
    out = prefix_reward([5, 2, 17, 0], [5, 5, 5, 5], CODES)
    np.testing.assert_allclose(out, [1.0, 1 / 3, 2 / 3, 0.0])


def test_similarity_reward_is_the_cosine_of_the_items_vectors():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [0.0, 0.0]])
    got = similarity_reward([0, 1, 2, 3, 2], [0, 0, 0, 1, 2], unit_rows(vectors))
    np.testing.assert_allclose(got, [1.0, 0.0, 1 / np.sqrt(2), 0.0, 1.0])
    # through TRL's interface: weights kept, the vectors required, sized to the catalogue
    funcs, weights = trl_reward_functions({"hit": 1.0, "similarity": 0.5}, CODES[:4], vectors)
    assert [f.__name__ for f in funcs] == ["hit", "similarity"] and weights == [1.0, 0.5]
    out = funcs[1](target=[0, 0], rollout_item=[2, 1], rollout_group=[0, 0], rollout_rank=[0, 1])
    np.testing.assert_allclose(out, [1 / np.sqrt(2), 0.0])
    with pytest.raises(ValueError, match="vectors"):
        trl_reward_functions({"similarity": 1.0}, CODES[:4])
    with pytest.raises(ValueError, match="3 rows for 4 items"):
        trl_reward_functions({"similarity": 1.0}, CODES[:4], vectors[:3])


def test_the_similarity_reward_refuses_missing_or_misshapen_embeddings(tmp_path):
    from sidrec.stages.rl import read_item_vectors

    with pytest.raises(InputError, match="rewards.similarity"):
        read_item_vectors(None, 4)
    np.save(tmp_path / "e.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(InputError, match=r"e.npy.*\[4, dim\]"):
        read_item_vectors(tmp_path / "e.npy", 4)
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="p.npy"):
        read_item_vectors(tmp_path / "p.npy", 1)
    assert read_item_vectors(tmp_path / "e.npy", 3).shape == (3, 2)


def test_rows_with_the_same_prompt_are_rewarded_by_their_own_targets():
    """MiniOneRec's bug: a target looked up by prompt text gives a repeated prompt the
    last target written. Here two rows share one prompt and one set of rollouts."""
    funcs, weights = trl_reward_functions({"hit": 1.0, "prefix": 0.5}, CODES)
    assert [f.__name__ for f in funcs] == ["hit", "prefix"] and weights == [1.0, 0.5]
    prompt = "History: x\nNext item:\n"
    rollouts = [3, 4, 3, 4]
    kwargs = dict(prompts=[prompt] * 4, completions=["?"] * 4, completion_ids=[[0]] * 4,
                  target=[3, 3, 4, 4], rollout_item=rollouts, rollout_group=[0, 0, 1, 1],
                  rollout_rank=[0, 1, 0, 1], sample=[0, 0, 1, 1], trainer_state=None)
    assert funcs[0](**kwargs) == [1.0, 0.0, 0.0, 1.0]


def test_unknown_or_all_zero_rewards_are_refused():
    with pytest.raises(ValueError, match="unknown reward"):
        trl_reward_functions({"hits": 1.0}, CODES)
    with pytest.raises(ValueError, match="at least one"):
        trl_reward_functions({"hit": 0.0}, CODES)


# ------------------------------------------------------------------- settings

@pytest.mark.parametrize("key, value, named", [
    ("num_generations", 1, "num_generations"),
    ("beta", -0.1, "beta"),
    ("rewards", {"ndcg": 1.0}, "rewards"),
    ("rollout", "greedy", "rollout"),
    ("tasks", ["sid_to_title"], "tasks"),
    ("temperature", 0.0, "temperature"),
    ("loss_type", "ppo", "loss_type"),
    ("patience", 0, "patience"),
    ("logprobs", "vocab", "logprobs"),
    ("scale_rewards", "rank", "scale_rewards"),
    ("bogus", 1, "bogus"),
])
def test_bad_rl_settings_are_named(key, value, named):
    with pytest.raises(InputError) as err:
        RLConfig.from_dict({key: value})
    assert named in str(err.value)


# ------------------------------------------------------------------- model fixtures

@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, one_thread):
    """An untrained tiny model with the SID tokens, saved as SFT leaves its folder."""
    root = tmp_path_factory.mktemp("rl")
    build_tiny(root / "base", tokenizer_corpus(TITLES), TINY)
    model, tokenizer = load_causal_lm(root / "base")
    add_sid_tokens(model, tokenizer, CODES, seed=0)
    save_model(model, tokenizer, root / "sft")
    return root / "sft"


@pytest.fixture(scope="module")
def catalogue(sft_dir):
    model, tokenizer = load_causal_lm(sft_dir)
    return Recommender(model, tokenizer, CODES, TITLES)


def samples(n, target=None, seed=0):
    rng = np.random.default_rng(seed)
    histories = [rng.integers(0, N_ITEMS, size=int(rng.integers(1, 5))) for _ in range(n)]
    targets = [target] * n if target is not None else rng.integers(0, N_ITEMS, size=n).tolist()
    return pd.DataFrame({"user": np.arange(n), "history": histories, "target": targets})


class FakeTrainer:
    """What GroupRollout reads from TRL's trainer."""

    def __init__(self, model):
        self.model = model
        self.accelerator = type("A", (), {"unwrap_model": staticmethod(lambda m: m)})()


# ------------------------------------------------------------------- rollouts

@pytest.mark.parametrize("kind", ["beam", "sample"])
def test_every_rollout_is_a_catalogue_item_with_its_sid_as_completion(catalogue, kind):
    G = 6
    rollout = GroupRollout(catalogue.tokenizer, catalogue.trie, G, kind=kind, temperature=1.5, seed=3)
    rows = samples(5)
    prompts = [catalogue.builder.eval_prompt(h) for h in rows["history"] for _ in range(G)]
    out = rollout(prompts, FakeTrainer(catalogue.model))
    items = np.asarray(out["rollout_item"])
    assert items.shape == (5 * G,) and ((items >= 0) & (items < N_ITEMS)).all()
    eos = catalogue.tokenizer.eos_token_id
    tokens = catalogue.trie.item_tokens.numpy()
    for item, completion in zip(items, out["completion_ids"]):
        assert completion == tokens[item].tolist() + [eos]
    assert out["rollout_group"] == np.repeat(np.arange(5), G).tolist()
    for g in range(5):
        assert sorted(out["rollout_rank"][g * G:(g + 1) * G]) == list(range(G))
    if kind == "beam":  # the G best items, distinct, in rank order
        for g in range(5):
            assert len(set(items[g * G:(g + 1) * G])) == G
    assert not catalogue.model.training  # left as found


def test_the_rollout_prompt_is_the_sft_and_evaluation_prompt(catalogue):
    """One builder: the RL rows' prompt text is the next-item prompt SFT trains on, and
    the ids the rollout feeds are the ids evaluation feeds (Recommender.prompts)."""
    rows = samples(4)
    columns = rl_rows(catalogue.builder, rows, ("next_item",), None, 0)
    sft_prompts = [e.prompt for e in catalogue.builder.examples(rows, ("next_item",))]
    assert columns["prompt"] == sft_prompts
    assert columns["target"] == rows["target"].tolist()
    G = 2
    out = GroupRollout(catalogue.tokenizer, catalogue.trie, G)(
        [p for p in columns["prompt"] for _ in range(G)], FakeTrainer(catalogue.model))
    expected = catalogue.prompts(rows["history"])
    assert out["prompt_ids"] == [p for p in expected for _ in range(G)]


def test_title_rows_target_their_own_item():
    builder = PromptBuilder(CODES, TITLES)
    columns = rl_rows(builder, samples(3), ("next_item", "title_to_sid"), None, 0)
    assert columns["task"].count("title_to_sid") == N_ITEMS
    title_rows = [i for i, t in enumerate(columns["task"]) if t == "title_to_sid"]
    assert [columns["target"][i] for i in title_rows] == list(range(N_ITEMS))
    assert columns["prompt"][title_rows[5]] == builder.title_to_sid(5).prompt


def test_rows_not_in_groups_are_refused(catalogue):
    rollout = GroupRollout(catalogue.tokenizer, catalogue.trie, 3)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        rollout.groups(["a", "a", "a", "b"])
    with pytest.raises(ValueError, match="not one prompt repeated"):
        rollout.groups(["a", "a", "b", "b", "b", "b"])


def test_cold_sampling_follows_the_greedy_path(catalogue):
    """At a temperature near 0 every draw is the best allowed code at each level: the
    item a width-1 constrained beam search finds."""
    prompts = catalogue.prompts(samples(6)["history"])
    greedy = constrained_topk(catalogue.model, prompts, catalogue.trie, k=1, beam_width=1,
                              pad_token_id=catalogue.tokenizer.pad_token_id, exact=False)
    drawn = sample_items(catalogue.model, prompts, catalogue.trie, n=4, temperature=1e-4,
                         pad_token_id=catalogue.tokenizer.pad_token_id,
                         generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(drawn.items, np.repeat(greedy.items, 4, axis=1))
    np.testing.assert_allclose(drawn.scores, np.repeat(greedy.scores, 4, axis=1), atol=1e-4)


# ------------------------------------------------------------------- trie log-probabilities

def test_trie_logprobs_renormalise_over_the_codes_each_prefix_allows(catalogue):
    """Against a hand computation per row: at level d, log_softmax over the tokens of the
    children of the row's own prefix only; eos (the only continuation) gets 0; the
    probabilities of all items under one prompt sum to 1."""
    trie, V = catalogue.trie, catalogue.model.get_output_embeddings().weight.shape[0]
    L = trie.levels
    eos = catalogue.tokenizer.eos_token_id
    torch.manual_seed(0)
    items = torch.arange(N_ITEMS)
    completion = torch.cat([trie.item_tokens[items], torch.full((N_ITEMS, 1), eos)], 1)
    logits = torch.randn(1, L + 1, V).expand(N_ITEMS, -1, -1).contiguous() * 3
    logps, entropy = TrieLogProbs(trie, V)(logits, completion, compute_entropy=True)
    assert logps.shape == (N_ITEMS, L + 1) and logps.dtype == torch.float32
    assert torch.equal(logps[:, L], torch.zeros(N_ITEMS)) and torch.equal(entropy[:, L], torch.zeros(N_ITEMS))
    for i in range(N_ITEMS):
        for d in range(L):
            siblings = {int(CODES[j, d]) for j in range(N_ITEMS) if (CODES[j, :d] == CODES[i, :d]).all()}
            allowed = torch.tensor([int(trie.level_tokens[d][c]) for c in sorted(siblings)])
            expected = logits[i, d, int(completion[i, d])] - torch.logsumexp(logits[i, d, allowed], 0)
            assert logps[i, d].item() == pytest.approx(expected.item(), abs=1e-5)
            p = torch.softmax(logits[i, d, allowed], 0)
            assert entropy[i, d].item() == pytest.approx(-(p * p.log()).sum().item(), abs=1e-5)
    # One distribution over the catalogue: every item's sequence probability sums to 1.
    assert logps.sum(1).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    # The temperature divides the logits first.
    hot, _ = TrieLogProbs(trie, V)(logits, completion, temperature=2.0)
    cold, _ = TrieLogProbs(trie, V)(logits / 2, completion)
    torch.testing.assert_close(hot, cold)


def test_trie_logprobs_refuse_a_completion_that_is_no_item():
    from sidrec.decode.trie import SIDTrie

    trie = SIDTrie.build(np.array([[0, 0], [1, 1]]), [[10, 11], [20, 21]])
    logits = torch.zeros(1, 3, 30)
    with pytest.raises(ValueError, match="no level-0 SID token"):
        TrieLogProbs(trie, 30)(logits, torch.tensor([[20, 20, 2]]))
    with pytest.raises(ValueError, match="no catalogue item"):   # (0, 1): both codes exist, the pair not
        TrieLogProbs(trie, 30)(logits, torch.tensor([[10, 21, 2]]))
    logps, _ = TrieLogProbs(trie, 30)(logits, torch.tensor([[10, 20, 2]]))
    # level 0: two codes allowed (log 1/2); level 1: one child only (log 1 = 0)
    torch.testing.assert_close(logps, torch.tensor([[math.log(0.5), 0.0, 0.0]]))


# ------------------------------------------------------------------- training

def small_run(sft_dir, out, **overrides):
    config = dict(max_steps=20, prompts_per_step=8, num_generations=6, eval_steps=5, lr=0.01, logging_steps=1,
                  rollout="sample", beta=0.0, rewards={"hit": 1.0, "prefix": 1.0}, max_valid_samples=16)
    config.update(overrides)
    return train_rl(sft_dir, samples(40, target=5), samples(16, target=5, seed=1), CODES, TITLES, out,
                    config, device="cpu", log=lambda *_: None)


def test_grpo_where_one_item_is_always_right_learns_it(sft_dir, tmp_path, one_thread):
    from transformers import AutoModelForCausalLM

    report = small_run(sft_dir, tmp_path / "rl")
    rewards = [h["rewards/hit/mean"] for h in report["log"]]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.3, rewards
    assert report["selected_step"] > 0 and report["selected_valid_ndcg"] > report["valid"][0]["valid_ndcg@10"]
    # The folder loads as a plain HF model, with weights that moved, and decodes item 5 first.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "rl")
    before = AutoModelForCausalLM.from_pretrained(sft_dir)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), before.state_dict().values()))
    saved = json.loads((tmp_path / "rl" / "rl_report.json").read_text())
    assert saved["selected_step"] == report["selected_step"]
    assert (tmp_path / "rl" / "generation_config.json").is_file()
    rec = Recommender.from_artifacts(tmp_path / "rl", _items(tmp_path), _sid(tmp_path))
    assert (rec.top_k(samples(4, seed=2)["history"], 3, beam_width=5).items[:, 0] == 5).all()
    assert not (tmp_path / ".rl.scratch").exists()  # scratch removed on success
    for key in ("zero_advantage_fraction", "median_step_seconds", "median_rollout_seconds"):
        assert report[key] is not None


def test_grpo_with_trie_logprobs_learns_the_item_and_keeps_kl_finite(sft_dir, tmp_path, one_thread):
    """The renormalised log-probabilities (rl.logprobs: trie) drive the same learning,
    with the KL term on: the logged KL stays finite and the saved model decodes item 5."""
    report = small_run(sft_dir, tmp_path / "rl", logprobs="trie", beta=0.01, scale_rewards="batch")
    rewards = [h["rewards/hit/mean"] for h in report["log"]]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.3, rewards
    kls = [h["kl"] for h in report["log"] if "kl" in h]
    assert kls and all(math.isfinite(k) for k in kls) and max(kls) > 0
    assert report["config"]["logprobs"] == "trie" and report["selected_step"] > 0
    assert report["config"]["scale_rewards"] == "batch"
    rec = Recommender.from_artifacts(tmp_path / "rl", _items(tmp_path), _sid(tmp_path))
    assert (rec.top_k(samples(4, seed=2)["history"], 3, beam_width=5).items[:, 0] == 5).all()


def test_a_resumed_run_reports_the_valid_checks_made_before_the_interruption(sft_dir, tmp_path, one_thread,
                                                                               monkeypatch):
    import sidrec.rl.grpo as grpo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed before rl/ was written")

    with monkeypatch.context() as m:
        m.setattr(grpo, "_write_output", interrupted)
        with pytest.raises(KeyboardInterrupt):
            small_run(sft_dir, tmp_path / "rl", max_steps=4, eval_steps=2)
    assert not (tmp_path / "rl").exists()
    report = small_run(sft_dir, tmp_path / "rl", max_steps=4, eval_steps=2)
    assert report["resumed_from"] is not None and report["resumed_from"].endswith("checkpoint-4")
    assert [v["step"] for v in report["valid"]] == [0, 2, 4]   # from before the kill
    assert report["steps"] == 4 and report["log"]               # not trained again, its log kept
    assert json.loads((tmp_path / "rl" / "rl_report.json").read_text())["valid"] == report["valid"]


def test_no_step_beating_sft_on_valid_keeps_the_sft_model(sft_dir, tmp_path, one_thread):
    # lr so small that nothing changes on valid: rl/ must be the SFT model, byte for byte.
    report = small_run(sft_dir, tmp_path / "rl", lr=1e-12, max_steps=4, eval_steps=2)
    assert report["selected_step"] == 0 and report["selected"].startswith("sft")
    a = (tmp_path / "rl" / "model.safetensors").read_bytes()
    assert a == (sft_dir / "model.safetensors").read_bytes()


def test_patience_stops_a_run_whose_valid_never_improves(sft_dir, tmp_path, one_thread):
    # Nothing changes on valid (lr ~ 0), so after 2 checks (steps 2, 4) without beating
    # step 0 the run stops at step 4 of 12, and rl/ is still the SFT model.
    report = small_run(sft_dir, tmp_path / "rl", lr=1e-12, max_steps=12, eval_steps=2, patience=2)
    assert report["stopped_early_at"] == 4 and report["steps"] == 4 and report["planned_steps"] == 12
    assert [v["step"] for v in report["valid"]] == [0, 2, 4]
    assert report["selected_step"] == 0
    # without patience the same run goes the whole way
    full = small_run(sft_dir, tmp_path / "rl_full", lr=1e-12, max_steps=6, eval_steps=2)
    assert full["stopped_early_at"] is None and full["steps"] == 6


def _items(root):
    path = root / "items.parquet"
    if not path.exists():
        pd.DataFrame({"item_id": np.arange(N_ITEMS), "title": TITLES, "text": TITLES,
                      "source_id": [f"m{i}" for i in range(N_ITEMS)]}).to_parquet(path, index=False)
    return path


def _sid(root):
    from sidrec.sid import write_sid_json

    path = root / "sid.json"
    if not path.exists():
        write_sid_json(path, CODES)
    return path


def test_rl_prompts_with_the_sft_models_format_and_keeps_it(sft_dir, tmp_path, one_thread, monkeypatch):
    """A model SFT trained with titles in its histories: RL's rows are prompted that way,
    and rl/ carries the format on to evaluation and serving."""
    import shutil

    import sidrec.rl.grpo as grpo
    from sidrec.lm.prompts import PromptFormat
    titled = tmp_path / "sft"
    shutil.copytree(sft_dir, titled)
    PromptFormat(history_title_words=1).write(titled)
    seen = []
    real_rows = grpo.rl_rows

    def recorded_rows(builder, *args, **kwargs):
        seen.append(real_rows(builder, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(grpo, "rl_rows", recorded_rows)
    train = samples(40, target=5)
    small_run(titled, tmp_path / "rl", max_steps=2, eval_steps=2)
    first_history = train["history"].iloc[seen[0]["sample"][0]]
    assert " ".join(TITLES[int(first_history[-1])].split()[:1]) + "\nNext item:\n" in seen[0]["prompt"][0]
    assert PromptFormat.read(tmp_path / "rl") == PromptFormat(history_title_words=1)
    rec = Recommender.from_artifacts(tmp_path / "rl", _items(tmp_path), _sid(tmp_path))
    assert rec.builder.prompt_format == PromptFormat(history_title_words=1)
