"""sidrec.decode.graphs: the plain beam search in padded, fixed shapes (replayed from
CUDA graphs on a GPU) gives what `constrained_topk(exact=False)` gives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.decode import constrained_topk
from sidrec.decode.graphs import BeamGraphs

from test_decode import CODES, PROMPTS, _tiny, model, trie  # noqa: F401  (test_decode's fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("rows, k, beam_width", [(1, 5, 10), (5, 10, 10), (12, 3, 4), (12, 13, 10)])
def test_padded_shapes_give_the_plain_beam_search_results(model, trie, rows, k, beam_width):
    graphs = BeamGraphs(model, trie, beam_width=beam_width, pad_token_id=0, max_rows=8, length_step=16,
                        k_step=8, capture=False)
    got = graphs.topk(PROMPTS[:rows], k)
    # the padded decode keeps max(k rounded up to k_step, beam_width) beams
    width = max(-(-k // 8) * 8, beam_width)
    want = constrained_topk(model, PROMPTS[:rows], trie, k=k, beam_width=width, exact=False, pad_token_id=0)
    assert got.items.shape == (rows, k) and got.invalid == 0
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-4)
    # rows are padded to a power of two (at most max_rows a chunk), every chunk once
    chunks = [min(8, rows - s) for s in range(0, rows, 8)]
    assert graphs.counts["batches"] == len(chunks)
    assert graphs.counts["padded_rows"] == sum(graphs.rows_bucket(c) - c for c in chunks)
    assert graphs.counts["eager"] == len(chunks) and graphs.counts["replays"] == 0


def test_scores_are_descending_catalogue_items_and_k_beyond_the_catalogue_is_padded(model, trie):
    graphs = BeamGraphs(model, trie, beam_width=80, capture=False)
    got = graphs.topk(PROMPTS[:3], len(CODES) + 5)
    assert (got.items[:, :len(CODES)] >= 0).all() and (got.items[:, len(CODES):] == -1).all()
    assert np.isneginf(got.scores[:, len(CODES):]).all()
    assert all((np.diff(row[:len(CODES)]) <= 1e-6).all() for row in got.scores)
    assert all(len(set(row[:len(CODES)])) == len(CODES) for row in got.items.tolist())


def test_bad_arguments_are_refused(model, trie):
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA model"):
        BeamGraphs(model, trie, capture=True)
    with pytest.raises(ValueError, match=">= 1"):
        BeamGraphs(model, trie, max_rows=0, capture=False)
    graphs = BeamGraphs(model, trie, capture=False)
    with pytest.raises(ValueError, match="k must be >= 1"):
        graphs.topk(PROMPTS[:1], 0)
    with pytest.raises(ValueError, match="empty prompt at row 1"):
        graphs.topk([PROMPTS[0], []], 3)


def test_one_k_shape_serves_every_k_up_to_the_beam_width(model, trie):
    graphs = BeamGraphs(model, trie, beam_width=10, capture=False)
    assert graphs.k_bucket(1) == graphs.k_bucket(10) == 10
    assert graphs.k_bucket(11) == min(20, trie.n_items)
    assert graphs.k_bucket(10 ** 6) == trie.n_items


def test_warm_captures_every_shape_of_the_given_prompt_lengths_once(model, trie, monkeypatch):
    graphs = BeamGraphs(model, trie, beam_width=10, max_rows=8, length_step=16, capture=False)
    assert graphs.warm([5, 40], k=10) == 0 and graphs.counts["captures"] == 0  # no capture: nothing to do
    seen = []

    def fake_capture(key, ids, attn):  # what a CUDA capture is handed: the padded shape's inputs
        assert tuple(ids.shape) == tuple(attn.shape) == key[:2]
        seen.append(key)
        graphs._graphs[key] = ("graph", ids, attn, None)
        return graphs._graphs[key]

    graphs.capture = True
    monkeypatch.setattr(graphs, "_capture", fake_capture)
    want = [(R, P, 10) for P in (16, 48) for R in (1, 2, 4, 8)]
    assert graphs.shapes([5, 40, 12, 33], k=3) == want
    assert graphs.warm([5, 40, 12, 33], k=3) == len(want) and seen == want
    assert graphs.warm([40], k=10) == 0 and len(seen) == len(want)      # captured once
    graphs.max_graphs = len(want) + 2
    assert graphs.warm([70], k=10) == 2                                 # up to max_graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_replayed_graphs_match_the_eager_padded_decode(trie):
    model = _tiny().cuda()
    eager = BeamGraphs(model, trie, beam_width=10, capture=False)
    graphs = BeamGraphs(model, trie, beam_width=10)
    for rows in (1, 3, 12, 3):   # the second 3 replays the graph the first one captured
        want, got = eager.topk(PROMPTS[:rows], 5), graphs.topk(PROMPTS[:rows], 5)
        np.testing.assert_array_equal(got.items, want.items)
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-4)
    assert graphs.error is None and graphs.counts["captures"] == 3 and graphs.counts["replays"] == 4
    warmed = BeamGraphs(model, trie, beam_width=10)
    assert warmed.warm([len(p) for p in PROMPTS], k=5) == len(warmed.shapes([len(p) for p in PROMPTS], 5))
    captures = warmed.counts["captures"]
    for rows in (1, 3, 12):   # every shape was captured ahead: only replays
        np.testing.assert_array_equal(warmed.topk(PROMPTS[:rows], 5).items, eager.topk(PROMPTS[:rows], 5).items)
    assert warmed.counts["captures"] == captures and warmed.counts["eager"] == 0
