"""Recommender: artifacts on disk -> a ready recommender -> top-K catalogue items.

The model is a tiny, untrained decoder with the SID tokens added (as SFT leaves it):
what is checked is the plumbing (prompts, trie, dtype, device), which does not depend
on the model being any good; the ranking itself is checked against scoring every item.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sidrec.decode import score_all_items
from sidrec.errors import InputError
from sidrec.lm.base import build_tiny, load_causal_lm, save_model
from sidrec.lm.prompts import PromptBuilder, encode_prompt, tokenizer_corpus
from sidrec.lm.vocab import add_sid_tokens, level_token_ids
from sidrec.recommend import Recommender
from sidrec.sid import code_token, write_sid_json

N_ITEMS = 24
# Three levels (codebooks 3, 4, 2): unique per item.
CODES = np.stack([np.arange(N_ITEMS) % 3, (np.arange(N_ITEMS) // 3) % 4, np.arange(N_ITEMS) // 12],
                 axis=1).astype(np.int64)
TITLES = [f"Film {i} ({1990 + i})" for i in range(N_ITEMS)]
TINY = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=300, seed=0)
HISTORIES = [[0, 1, 2], [5], [7, 3, 11, 20], [23, 22]]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """(model_dir, items.parquet, sid.json) as the pipeline leaves them."""
    root = tmp_path_factory.mktemp("artifacts")
    build_tiny(root / "base", tokenizer_corpus(TITLES), TINY)
    model, tokenizer = load_causal_lm(root / "base")
    add_sid_tokens(model, tokenizer, CODES)
    save_model(model, tokenizer, root / "sft")
    items = pd.DataFrame({"item_id": np.arange(N_ITEMS), "title": TITLES,
                          "text": [f"About {t}" for t in TITLES],
                          "source_id": [f"m{i}" for i in range(N_ITEMS)]})
    items.to_parquet(root / "items.parquet", index=False)
    write_sid_json(root / "sid.json", CODES)
    return root / "sft", root / "items.parquet", root / "sid.json"


@pytest.fixture(scope="module")
def recommender(artifacts):
    return Recommender.from_artifacts(*artifacts, device="cpu")


def test_from_artifacts_returns_k_catalogue_items_best_first(recommender):
    k = 5
    result = recommender.top_k(HISTORIES, k, beam_width=8)
    assert result.items.shape == result.scores.shape == (len(HISTORIES), k)
    assert result.invalid == 0
    assert ((result.items >= 0) & (result.items < N_ITEMS)).all()
    assert all(len(set(row)) == k for row in result.items.tolist())
    assert np.isfinite(result.scores).all() and (np.diff(result.scores, axis=1) <= 0).all()
    # Exact mode: the scores are the k best of every item's score (ties make items ambiguous).
    for row, history in enumerate(HISTORIES):
        prompt = recommender.prompts([history])[0]
        every = score_all_items(recommender.model, prompt, recommender.trie)
        np.testing.assert_allclose(result.scores[row], np.sort(every)[::-1][:k], rtol=0, atol=1e-4)
        np.testing.assert_allclose(every[result.items[row]], result.scores[row], rtol=0, atol=1e-4)


def test_from_artifacts_loads_on_the_cpu_in_float32(recommender):
    assert recommender.model.device.type == "cpu" and recommender.model.dtype == torch.float32
    assert recommender.trie.device.type == "cpu" and recommender.trie.n_items == N_ITEMS
    assert not recommender.model.training
    np.testing.assert_array_equal(recommender.builder.codes, CODES)


def test_from_artifacts_honours_dtype(artifacts):
    rec = Recommender.from_artifacts(*artifacts, dtype="bfloat16")
    assert rec.model.dtype == torch.bfloat16
    assert rec.top_k(HISTORIES[:2], 3, beam_width=4).invalid == 0


def test_prompts_are_the_training_prompts(recommender):
    builder = PromptBuilder(CODES, TITLES)
    expected = [encode_prompt(recommender.tokenizer, builder.eval_prompt(h)) for h in HISTORIES]
    assert recommender.prompts(HISTORIES) == expected
    # Each history SID is its own tokens in the prompt (the SID tokens came with the model).
    tokens = recommender.tokenizer.convert_ids_to_tokens(expected[1])
    assert [code_token(lv, c) for lv, c in enumerate(CODES[5])] == [t for t in tokens if t.startswith("<")]


def test_trie_spells_items_with_the_models_token_ids(recommender):
    tokenizer = recommender.tokenizer
    for item in (0, 13, N_ITEMS - 1):
        ids = tokenizer.convert_tokens_to_ids([code_token(lv, c) for lv, c in enumerate(CODES[item])])
        assert recommender.trie.item_tokens[item].tolist() == ids


def test_level_token_ids_names_a_missing_token(artifacts):
    _, tokenizer = load_causal_lm(artifacts[0])
    table = level_token_ids(tokenizer, CODES)
    assert [len(t) for t in table] == [3, 4, 2]
    assert table[1][2] == tokenizer.convert_tokens_to_ids("<b_2>")
    other = CODES.copy()
    other[5, 1] = 6  # a code the model was never given a token for
    with pytest.raises(ValueError, match="<b_6>"):
        level_token_ids(tokenizer, other)
    # A code that no item uses, below the largest, maps to -1 (the trie masks it).
    assert level_token_ids(tokenizer, CODES[CODES[:, 1] != 2])[1][2] == -1
    base, base_tokenizer = load_causal_lm(artifacts[0].parent / "base")
    with pytest.raises(ValueError, match="<a_0>"):
        Recommender(base, base_tokenizer, CODES, TITLES)


def test_from_artifacts_names_the_bad_artifact(artifacts, tmp_path):
    model_dir, items, sid = artifacts
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        Recommender.from_artifacts(tmp_path / "nowhere", items, sid)
    write_sid_json(tmp_path / "short.json", CODES[:-1])  # another catalogue
    with pytest.raises(InputError, match="short.json"):
        Recommender.from_artifacts(model_dir, items, tmp_path / "short.json")
    with pytest.raises(InputError, match="missing.parquet"):
        Recommender.from_artifacts(model_dir, tmp_path / "missing.parquet", sid)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_from_artifacts_cuda_without_cuda_is_an_error(artifacts):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        Recommender.from_artifacts(*artifacts, device="cuda")
    with pytest.raises(ValueError, match="device"):
        Recommender.from_artifacts(*artifacts, device="tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_from_artifacts_on_cuda_in_bfloat16(artifacts, recommender):
    rec = Recommender.from_artifacts(*artifacts, device="cuda")
    assert rec.model.device.type == "cuda" and rec.model.dtype == torch.bfloat16
    assert rec.trie.device.type == "cuda"
    result = rec.top_k(HISTORIES, 5, beam_width=8)
    assert result.invalid == 0 and ((result.items >= 0) & (result.items < N_ITEMS)).all()
    # bf16 scores stay close to the float32 CPU ones (the items may swap on near-ties).
    np.testing.assert_allclose(result.scores, recommender.top_k(HISTORIES, 5, beam_width=8).scores,
                               rtol=0, atol=0.1)
