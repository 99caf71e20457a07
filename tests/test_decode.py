"""SID trie and exact constrained top-K decoding, checked against brute force.

The model is a tiny random decoder (~25k parameters, vocab 100) whose lm_head is scaled
up so log-probabilities spread over tens of nats: rankings are non-trivial, plain
beam search goes wrong on some rows, and the certificate passes on others.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from sidrec.decode import SIDTrie, constrained_topk, score_all_items

N_ITEMS, L, K = 60, 3, 5
# Level l's code c is vocabulary token 50 + 10 l + c; ids below 50 are "words".
LEVEL_TOKENS = [np.arange(K) + 50 + 10 * lvl for lvl in range(L)]
_rng = np.random.default_rng(0)
_ALL = np.stack(np.meshgrid(*[np.arange(K)] * L, indexing="ij"), -1).reshape(-1, L)
CODES = _ALL[_rng.choice(len(_ALL), N_ITEMS, replace=False)]
PROMPTS = [_rng.integers(1, 50, n).tolist() for n in (3, 11, 6, 2, 13, 8, 5, 9, 4, 12, 7, 10)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny(arch: str = "llama", attn: str = "sdpa", scale: float = 40.0):
    torch.manual_seed(0)
    sizes = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                 tie_word_embeddings=False)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**sizes, attn_implementation=attn))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**sizes, attn_implementation=attn))
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)  # peaky logits: log-probs spread over tens of nats
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return _tiny()


@pytest.fixture(scope="module")
def trie():
    return SIDTrie.build(CODES, LEVEL_TOKENS)


@pytest.fixture(scope="module")
def brute(model, trie):
    """float32 [rows, n_items]: every item's score for every prompt."""
    return np.stack([score_all_items(model, p, trie) for p in PROMPTS])


def _assert_exact(result, brute: np.ndarray, k: int):
    """items are brute force's top k in order (no near-ties in this fixture) and scores
    match it."""
    assert result.invalid == 0
    for row, scores in enumerate(brute):
        order = np.argsort(-scores, kind="stable")
        gaps = -np.diff(scores[order[:k + 1]])
        assert gaps.min() > 1e-4, "fixture has a near-tie; the strict order check would be unfair"
        np.testing.assert_array_equal(result.items[row], order[:k], err_msg=f"row {row}")
        np.testing.assert_allclose(result.scores[row], scores[order[:k]], rtol=0, atol=1e-4)


# ------------------------------------------------------------------------- trie

def test_trie_tables_spell_every_item(trie):
    assert trie.n_items == N_ITEMS and trie.levels == L and trie.n_nodes[0] == 1
    assert trie.n_nodes[L] == N_ITEMS and trie.n_nodes[1] == len(np.unique(CODES[:, 0]))
    node = torch.zeros(N_ITEMS, dtype=torch.long)
    codes = torch.as_tensor(CODES)
    for d in range(L):  # walk every item's codes down the transition tables
        node = trie.child[d][node, codes[:, d]].long()
        assert (node >= 0).all()
        assert torch.equal(trie.node_token[d + 1][node], torch.as_tensor(LEVEL_TOKENS[d])[codes[:, d]])
    assert torch.equal(trie.leaf_item[node], torch.arange(N_ITEMS))
    assert torch.equal(trie.item_tokens, torch.stack([torch.as_tensor(LEVEL_TOKENS[d])[codes[:, d]]
                                                      for d in range(L)], 1))
    # an unused (node, code) pair has no child; below counts nodes under each level-0 code
    assert (trie.child[L - 1] >= 0).sum() == N_ITEMS
    assert trie.below[0].sum() == trie.n_nodes[1] and trie.below[1].sum() == trie.n_nodes[2]


def test_trie_rejects_duplicates_and_unmapped_codes():
    dup = CODES.copy()
    dup[17] = dup[3]
    with pytest.raises(ValueError, match=r"items \[3, 17\] share SID"):
        SIDTrie.build(dup, LEVEL_TOKENS)
    missing = [t.copy() for t in LEVEL_TOKENS]
    missing[1][CODES[0, 1]] = -1
    with pytest.raises(ValueError, match="no token id"):
        SIDTrie.build(CODES, missing)
    with pytest.raises(ValueError, match="has no token"):
        SIDTrie.build(CODES, [t[:2] for t in LEVEL_TOKENS])
    shared = [t.copy() for t in LEVEL_TOKENS]
    shared[0][:] = 50
    with pytest.raises(ValueError, match="share the vocabulary id"):
        SIDTrie.build(CODES, shared)


# ------------------------------------------------------------------- exactness

@pytest.mark.parametrize("k, beam_width", [(5, None), (10, None), (10, 4), (5, 60)])
def test_topk_equals_brute_force(model, trie, brute, k, beam_width):
    res = constrained_topk(model, PROMPTS, trie, k=k, beam_width=beam_width, batch_size=5, pad_token_id=0)
    _assert_exact(res, brute, k)
    assert res.stats["uncertified_rows"] == 0
    assert res.stats["certified_first_pass"] + res.stats["widened_rows"] == len(PROMPTS)
    if beam_width == 60:  # the beam covers every level: nothing pruned, nothing widened
        assert res.stats["widened_rows"] == 0


def test_certificate_catches_plain_beam_errors(model, trie, brute):
    k, beam = 5, 10
    plain = constrained_topk(model, PROMPTS, trie, k=k, beam_width=beam, pad_token_id=0, exact=False)
    exact = constrained_topk(model, PROMPTS, trie, k=k, beam_width=beam, pad_token_id=0)
    wrong = np.flatnonzero((plain.items != exact.items).any(1))
    assert wrong.size > 0, "fixture should contain rows where plain beam search is wrong"
    # the certificate flagged (at least) every wrong row, and widening fixed them
    assert plain.stats["uncertified_rows"] >= wrong.size
    assert 0 < exact.stats["certified_first_pass"] < len(PROMPTS)
    assert exact.stats["widened_rows"] == len(PROMPTS) - exact.stats["certified_first_pass"]
    _assert_exact(exact, brute, k)
    # plain beam never beats the exact answer: its k-th score is no higher
    assert (plain.scores[:, -1] <= exact.scores[:, -1] + 1e-5).all()


def test_beam_narrower_than_k_is_widened(model, trie, brute):
    res = constrained_topk(model, PROMPTS, trie, k=8, beam_width=2, pad_token_id=0)
    assert res.stats["widened_rows"] == len(PROMPTS)  # 2 beams x 5 codes cannot hold 8 items
    _assert_exact(res, brute, 8)


def test_outputs_are_distinct_catalogue_items(model, trie):
    res = constrained_topk(model, PROMPTS, trie, k=20, beam_width=3, pad_token_id=0)
    assert res.invalid == 0 and res.items.dtype == np.int64 and res.scores.dtype == np.float32
    assert res.items.shape == res.scores.shape == (len(PROMPTS), 20)
    assert ((res.items >= 0) & (res.items < N_ITEMS)).all()
    assert all(len(set(row)) == 20 for row in res.items.tolist())
    assert (np.diff(res.scores, axis=1) <= 0).all()  # best first


def test_batch_size_and_padding_do_not_change_results(model, trie):
    one = constrained_topk(model, PROMPTS, trie, k=10, batch_size=1, pad_token_id=0)
    many = constrained_topk(model, PROMPTS, trie, k=10, batch_size=64, pad_token_id=7)
    np.testing.assert_array_equal(one.items, many.items)
    np.testing.assert_allclose(one.scores, many.scores, rtol=0, atol=1e-5)
    # a short prompt beside a long one is left-padded by 20 tokens: same scores
    short, long_ = PROMPTS[3], list(range(1, 23))
    alone = constrained_topk(model, [short], trie, k=10, pad_token_id=0)
    padded = constrained_topk(model, [long_, short], trie, k=10, pad_token_id=0)
    np.testing.assert_array_equal(alone.items[0], padded.items[1])
    np.testing.assert_allclose(alone.scores[0], padded.scores[1], rtol=0, atol=1e-5)


def test_small_catalogue_is_padded(model):
    trie = SIDTrie.build(CODES[:4], LEVEL_TOKENS)
    res = constrained_topk(model, PROMPTS[:3], trie, k=6, beam_width=2, pad_token_id=0)
    assert res.invalid == 0
    assert (res.items[:, 4:] == -1).all() and np.isneginf(res.scores[:, 4:]).all()
    for row, p in enumerate(PROMPTS[:3]):
        s = score_all_items(model, p, trie)
        np.testing.assert_array_equal(res.items[row, :4], np.argsort(-s)[:4])
        np.testing.assert_allclose(res.scores[row, :4], np.sort(s)[::-1], atol=1e-4)


@pytest.mark.parametrize("levels", [1, 4])
def test_other_depths(model, levels):
    rng = np.random.default_rng(levels)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * levels, indexing="ij"), -1).reshape(-1, levels)
    codes = grid[rng.choice(len(grid), min(len(grid), 40), replace=False)]
    tokens = [np.arange(4) + 50 + 10 * lvl for lvl in range(levels)]
    trie = SIDTrie.build(codes, tokens)
    res = constrained_topk(model, PROMPTS[:4], trie, k=3, beam_width=2, pad_token_id=0)
    brute = np.stack([score_all_items(model, p, trie) for p in PROMPTS[:4]])
    _assert_exact(res, brute, 3)


@pytest.mark.parametrize("arch, attn", [("qwen2", "sdpa"), ("llama", "eager")])
def test_other_architectures_and_attention(trie, arch, attn):
    model = _tiny(arch, attn)
    prompts = PROMPTS[:6]
    res = constrained_topk(model, prompts, trie, k=5, beam_width=5, batch_size=4, pad_token_id=0)
    brute = np.stack([score_all_items(model, p, trie) for p in prompts])
    _assert_exact(res, brute, 5)


def test_rejects_bad_input(model, trie):
    with pytest.raises(ValueError, match="empty prompt"):
        constrained_topk(model, [[1, 2], []], trie, k=3, pad_token_id=0)
    with pytest.raises(ValueError, match="k must be"):
        constrained_topk(model, [[1, 2]], trie, k=0, pad_token_id=0)
    empty = constrained_topk(model, [], trie, k=3, pad_token_id=0)
    assert empty.items.shape == (0, 3) and empty.invalid == 0


def test_widening_stays_exact_when_its_first_round_is_capped(model, trie, brute, monkeypatch):
    """The first widening round caps deep levels at budget / rows; rows it cuts short
    must fail their certificate and be finished by the bounded rounds."""
    from sidrec.decode import beam

    calls = []
    real = beam._decode_batch

    def spy(*args, **kw):
        out = real(*args, **kw)
        calls.append((kw.get("max_width"), out.widths, out.certified.tolist()))
        return out

    monkeypatch.setattr(beam, "_decode_batch", spy)
    monkeypatch.setattr(beam, "_WIDEN_BUDGET_FACTOR", 1)   # budget 4 x 2: every cap binds early
    res = constrained_topk(model, PROMPTS, trie, k=8, beam_width=2, batch_size=4, pad_token_id=0)
    _assert_exact(res, brute, 8)
    capped = [c for c in calls if c[0] is not None]
    assert capped and all(max(widths) <= cap for cap, widths, _ in capped)
    assert any(not all(ok) for _, _, ok in capped)   # the cap cut some rows short...
    assert res.stats["widen_rounds"] >= 2             # ...and later rounds finished them
    assert res.stats["uncertified_rows"] == 0
