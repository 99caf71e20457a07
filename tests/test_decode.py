"""SID trie and exact constrained top-K decoding, checked against brute force.

The model is a tiny random decoder (~25k parameters, vocab 100) whose lm_head is scaled
up so log-probabilities spread over tens of nats: rankings are non-trivial, plain
beam search goes wrong on some rows, and the certificate passes on others. The same
model trained a few dozen steps and cast to bf16 checks the float32 rescoring: its lists
against brute-force float32 scoring, and their independence of batch shape.
"""
from __future__ import annotations

import copy

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


# ------------------------------------------------ float32 rescoring of a bf16 model

def _trained(steps: int = 40) -> torch.nn.Module:
    """The tiny model (head unscaled) after `steps` Adam steps on 3 random items per
    fixture prompt: peaked where it was trained, as a fine-tuned model is (a few items
    per row above -4 nats, the rest far below)."""
    model = _tiny(scale=1.0).train()
    gen = torch.Generator().manual_seed(1)
    tokens = SIDTrie.build(CODES, LEVEL_TOKENS).item_tokens
    seqs = [p + tokens[int(i)].tolist() for p in PROMPTS for i in torch.randint(0, N_ITEMS, (3,), generator=gen)]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])      # right-padded
    labels = torch.full_like(ids, -100)
    for r, s in enumerate(seqs):                                         # loss on the item's tokens
        labels[r, len(s) - L:len(s)] = ids[r, len(s) - L:len(s)]
    mask = (torch.arange(width)[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def bf16_model():
    return _trained().to(torch.bfloat16)


@pytest.fixture(scope="module")
def bf16_brute(bf16_model, trie):
    """float32 [rows, n_items]: brute force with the bf16 model's weights upcast to float32,
    full sequences and plain causal attention (no tree mask, no cache, no padding)."""
    ref = copy.deepcopy(bf16_model).float()
    return np.stack([score_all_items(ref, p, trie) for p in PROMPTS])


@pytest.mark.parametrize("k, beam_width", [(5, None), (10, None), (8, 2)])
def test_bf16_lists_are_float32_brute_force_top_k(bf16_model, trie, bf16_brute, k, beam_width):
    top = np.sort(bf16_brute, 1)[:, ::-1]
    assert (top[:, 0] > -3.0).all() and (top[:, 20] < top[:, 0] - 2.0).all(), "fixture should be peaked"
    res = constrained_topk(bf16_model, PROMPTS, trie, k=k, beam_width=beam_width, batch_size=5, pad_token_id=0)
    _assert_exact(res, bf16_brute, k)        # the same items in order, scores within 1e-4
    assert res.stats["uncertified_rows"] == 0
    assert bf16_model.dtype == torch.bfloat16  # the rescoring's float32 copy left it alone
    s = res.stats
    assert s["rescored"] is True and s["rescored_candidates"] >= len(PROMPTS) * k
    assert np.isfinite(s["max_score_gap"]) and s["max_score_gap"] >= 0
    assert np.isfinite(s["max_tolerance"]) and s["max_tolerance"] >= max(1e-2, 2 * s["max_score_gap"]) - 1e-7


def test_bf16_results_do_not_depend_on_batch_shape(bf16_model, trie):
    k = 10
    runs = [constrained_topk(bf16_model, PROMPTS, trie, k=k, batch_size=b, pad_token_id=0)
            for b in (1, 5, len(PROMPTS))]
    flipped = constrained_topk(bf16_model, PROMPTS[::-1], trie, k=k, batch_size=5, pad_token_id=7)
    runs.append(type(flipped)(flipped.items[::-1], flipped.scores[::-1], flipped.invalid, flipped.stats))
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].items, other.items)
        np.testing.assert_allclose(runs[0].scores, other.scores, rtol=0, atol=1e-5)
    # a short prompt alone and left-padded by 20 tokens beside a long one
    short, long_ = PROMPTS[3], list(range(1, 23))
    alone = constrained_topk(bf16_model, [short], trie, k=k, pad_token_id=0)
    padded = constrained_topk(bf16_model, [long_, short], trie, k=k, pad_token_id=0)
    np.testing.assert_array_equal(alone.items[0], padded.items[1])
    np.testing.assert_allclose(alone.scores[0], padded.scores[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(alone.scores[0], runs[0].scores[3], rtol=0, atol=1e-5)


def test_bf16_search_scores_alone_are_off_by_more_than_float32_tolerance(bf16_model, trie, bf16_brute):
    """The problem the rescoring solves exists in this fixture: the bf16 search pass's
    own scores miss float32 brute force by far more than the 1e-4 that float32 allows."""
    plain = constrained_topk(bf16_model, PROMPTS, trie, k=10, batch_size=5, pad_token_id=0, rescore=False)
    assert plain.stats["rescored"] is False and plain.stats["rescored_candidates"] == 0
    off = np.abs(plain.scores - np.take_along_axis(bf16_brute, plain.items, 1)).max()
    assert off > 1e-3
    exact = constrained_topk(bf16_model, PROMPTS, trie, k=10, batch_size=5, pad_token_id=0)
    assert exact.stats["max_score_gap"] > 1e-3   # what the rescoring saw and its tol covers


def test_full_fanout_round_with_rescoring_is_certified(bf16_model, trie, bf16_brute, monkeypatch):
    """No guided round: failing rows go straight to the pass with no pruning, which
    returns and rescores every leaf, so it certifies whatever the gaps."""
    from sidrec.decode import beam

    monkeypatch.setattr(beam, "_GUIDED_ROUNDS", 0)
    res = constrained_topk(bf16_model, PROMPTS, trie, k=8, beam_width=2, batch_size=4, pad_token_id=0)
    assert res.stats["full_fanout_rows"] == len(PROMPTS) and res.stats["widen_rounds"] == 1
    assert res.stats["uncertified_rows"] == 0
    assert res.stats["rescored_candidates"] >= len(PROMPTS) * N_ITEMS   # every leaf of every row
    _assert_exact(res, bf16_brute, 8)


def test_rescoring_chunks_give_the_same_scores(bf16_model, trie, bf16_brute, monkeypatch):
    """A rescoring budget of one candidate of one row per forward changes nothing."""
    from sidrec.decode import beam

    monkeypatch.setattr(beam, "_RESCORE_ELEMENTS", 1)
    assert beam._rescore_chunk(12, 14, 13, L, 100, 4, 64) == (1, 1)
    res = constrained_topk(bf16_model, PROMPTS[:5], trie, k=5, batch_size=5, pad_token_id=0)
    _assert_exact(res, bf16_brute[:5], 5)


def test_reference_model_is_a_float32_copy_only_when_needed(model, bf16_model):
    from sidrec.decode.beam import reference_model

    assert reference_model(model) is model                # float32: no copy
    ref = reference_model(bf16_model)
    assert ref is not bf16_model and {p.dtype for p in ref.parameters()} == {torch.float32}
    assert {p.dtype for p in bf16_model.parameters()} == {torch.bfloat16}
    for a, b in zip(ref.parameters(), bf16_model.parameters()):
        assert torch.equal(a, b.float())                  # the bf16 weights, upcast exactly


def test_a_given_reference_is_used_not_copied(bf16_model, trie, monkeypatch):
    from sidrec.decode import beam

    ref = beam.reference_model(bf16_model)
    expected = constrained_topk(bf16_model, PROMPTS[:4], trie, k=5, pad_token_id=0)

    def no_copy(model):
        raise AssertionError("reference_model called although a reference was given")

    monkeypatch.setattr(beam, "reference_model", no_copy)
    res = constrained_topk(bf16_model, PROMPTS[:4], trie, k=5, pad_token_id=0, reference=ref)
    np.testing.assert_array_equal(res.items, expected.items)
    np.testing.assert_allclose(res.scores, expected.scores, rtol=0, atol=1e-5)
    plain = constrained_topk(bf16_model, PROMPTS[:4], trie, k=5, pad_token_id=0, exact=False)
    assert plain.stats["rescored"] is False             # no rescoring, no reference made


class _Tokens:
    """The tokenizer surface `Recommender` needs here: SID tokens -> LEVEL_TOKENS ids."""
    unk_token_id, pad_token_id = None, 0

    def convert_tokens_to_ids(self, token: str) -> int:
        from sidrec.sid import parse_token

        level, code = parse_token(token)
        return int(LEVEL_TOKENS[level][code])


def test_recommender_makes_its_float32_reference_once(model, bf16_model, monkeypatch):
    import sidrec.recommend as recommend

    titles = [f"item {i}" for i in range(N_ITEMS)]
    assert recommend.Recommender(model, _Tokens(), CODES, titles).reference() is model
    rec = recommend.Recommender(bf16_model, _Tokens(), CODES, titles)
    ref = rec.reference()
    assert ref is rec.reference() and ref.dtype == torch.float32 and rec.model.dtype == torch.bfloat16
    seen = []

    def spy(*args, **kw):
        seen.append(kw["reference"])
        return "result"

    monkeypatch.setattr(recommend, "constrained_topk", spy)
    monkeypatch.setattr(rec, "prompts", lambda histories: [PROMPTS[0]] * len(histories))
    rec.top_k([[1], [2]], 3)
    rec.top_k([[1]], 3)
    rec.top_k([[1]], 3, exact=False)
    assert seen[0] is ref and seen[1] is ref and seen[2] is None
    rec.model = copy.deepcopy(bf16_model)                 # another model: another reference
    assert rec.reference() is not ref


def test_a_float32_model_is_rescored_only_when_asked(model, trie, brute):
    # its search pass is float32 already: by default the certificate reads its own scores
    plain = constrained_topk(model, PROMPTS, trie, k=5, batch_size=5, pad_token_id=0)
    forced = constrained_topk(model, PROMPTS, trie, k=5, batch_size=5, pad_token_id=0, rescore=True)
    assert plain.stats["rescored"] is False and plain.stats["rescored_candidates"] == 0
    assert forced.stats["rescored"] is True and forced.stats["rescored_candidates"] >= len(PROMPTS) * 5
    _assert_exact(plain, brute, 5)
    _assert_exact(forced, brute, 5)
