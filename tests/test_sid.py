"""Semantic IDs: unique assignment (re-spread, extra level), sid.json writing and checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sidrec import sid
from sidrec.errors import InputError
from sidrec.quantize import Codes, RQKMeansConfig, RQVAEConfig, encode, train_rqkmeans, train_rqvae
from sidrec.sid import (assign_unique_sids, code_token, level_tokens, parse_token, read_sid_json,
                        sid_strings, write_sid_json, write_sid_meta)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def adversarial() -> np.ndarray:
    """900 x 32: 600 copies of one vector, then 300 random vectors."""
    rng = np.random.default_rng(0)
    same = np.tile(rng.normal(size=(1, 32)), (600, 1))
    return np.concatenate([same, rng.normal(size=(300, 32))]).astype(np.float32)


def _rqvae_codes(x, seed=0) -> Codes:
    config = RQVAEConfig(hidden_dims=[32, 16], latent_dim=8, levels=3, codebook_size=32,
                         epochs=40, kmeans_iters=10, seed=seed)
    model, _ = train_rqvae(x, config, log=None)
    return encode(model, x)


def _rqkmeans_codes(x) -> Codes:
    q, _ = train_rqkmeans(x, RQKMeansConfig(levels=3, codebook_size=32, iters=10), log=None)
    return q.encode(x)


def _assert_unique(sids: np.ndarray):
    assert sids.ndim == 2  # one length for every item
    assert np.unique(sids, axis=0).shape[0] == sids.shape[0]
    strings = sid_strings(sids)
    assert len(set(strings)) == len(strings)


@pytest.mark.parametrize("quantise", [_rqvae_codes, _rqkmeans_codes], ids=["rqvae", "rqkmeans"])
def test_adversarial_embeddings_get_unique_sids(adversarial, quantise):
    codes = quantise(adversarial)
    sids, meta = assign_unique_sids(codes, 32)
    _assert_unique(sids)
    assert meta["collisions_before"]["items"] >= 600 and meta["collisions_after"] == 0
    # 600 identical items share one prefix, more than K = 32 codes: an extra level for all
    assert meta["extra_level"] and sids.shape == (900, 4) and meta["levels"] == 4
    assert meta["codebook_sizes"][:3] == [32, 32, 32] and meta["codebook_sizes"][3] == sids[:, 3].max() + 1
    # only the last level moves; items that collided with nobody keep their codes exactly
    np.testing.assert_array_equal(sids[:, :2], codes.codes[:, :2])
    _, inverse, counts = np.unique(codes.codes, axis=0, return_inverse=True, return_counts=True)
    alone = counts[inverse.reshape(-1)] == 1
    np.testing.assert_array_equal(sids[alone, :3], codes.codes[alone])
    assert (sids[alone, 3] == 0).all()


def test_respread_suffices_keeps_levels_and_minimises_cost():
    k = 8
    codes = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1],   # one colliding tuple
                      [0, 0, 2],                           # holds code 2 in the same prefix
                      [1, 0, 1]])                          # another prefix: untouched
    cost = np.full((5, k), 3.0, dtype=np.float32)
    cost[0, :5] = [5, 0.0, 0.1, 1.0, 3]
    cost[1, :5] = [5, 0.2, 0.1, 3.0, 0.5]
    cost[2, :5] = [5, 0.1, 0.1, 0.3, 3]
    sids, meta = assign_unique_sids(Codes(codes=codes, last_level_cost=cost), k)
    # optimum over the free codes {0,1,3,4,...} (2 is taken): 0->1, 1->4, 2->3, total 0.8
    np.testing.assert_array_equal(sids[:, 2], [1, 4, 3, 2, 1])
    np.testing.assert_array_equal(sids[:, :2], codes[:, :2])
    assert sids.shape == (5, 3) and not meta["extra_level"] and meta["levels"] == 3
    assert meta["collisions_before"] == {"items": 3, "groups": 1}
    assert meta["respread_items"] == 2 and meta["collisions_after"] == 0
    assert meta["codebook_sizes"] == [8, 8, 8]


def test_prefix_group_larger_than_k_forces_extra_level_for_everyone():
    k = 4
    codes = np.array([[0, 0]] * 6 + [[1, 3]])
    cost = np.tile(np.arange(k, dtype=np.float32), (7, 1))
    sids, meta = assign_unique_sids(Codes(codes=codes, last_level_cost=cost), k)
    _assert_unique(sids)
    assert sids.shape == (7, 3) and meta["extra_level"] and meta["extra_levels"] == 1
    assert meta["codebook_sizes"] == [4, 4, 2]  # 6 items over 4 codes: at most 2 per code
    np.testing.assert_array_equal(sids[6], [1, 3, 0])  # needed nothing, still gets a 0
    assert np.bincount(sids[:6, 1], minlength=k).max() == 2  # spread evenly, not piled up


def test_greedy_fallback_for_huge_groups(monkeypatch):
    monkeypatch.setattr(sid, "_EXACT_ASSIGNMENT_CELLS", 0)
    k = 4
    codes = np.array([[2, 1]] * 14 + [[0, 0], [0, 0]])
    cost = np.random.default_rng(0).random((16, k)).astype(np.float32)
    sids, meta = assign_unique_sids(Codes(codes=codes, last_level_cost=cost), k)
    _assert_unique(sids)
    # 14 items over 4 codes: at most ceil(14/4) = 4 per code, so one extra level of 4 codes
    assert meta["extra_levels"] == 1 and sids.shape == (16, 3)
    assert np.bincount(sids[:14, 1], minlength=k).max() == 4


def test_more_than_k_squared_identical_items_get_two_extra_levels():
    k = 2
    codes = np.zeros((9, 1), dtype=np.int64)  # one level, 9 items, K = 2: ceil(9/2) = 5 > K
    sids, meta = assign_unique_sids(Codes(codes=codes, last_level_cost=np.zeros((9, k), np.float32)), k)
    _assert_unique(sids)
    assert meta["extra_levels"] == 3 and sids.shape == (9, 4)


def test_no_collisions_is_identity():
    codes = np.array([[0, 1], [1, 0], [1, 1]])
    sids, meta = assign_unique_sids(Codes(codes=codes, last_level_cost=np.zeros((3, 2), np.float32)), 2)
    np.testing.assert_array_equal(sids, codes)
    assert meta["collisions_before"] == {"items": 0, "groups": 0} and meta["respread_items"] == 0
    assert meta["usage"] == [1.0, 1.0]


def test_same_seed_byte_identical_sid_json(adversarial, tmp_path):
    paths = []
    for run in range(2):
        sids, meta = assign_unique_sids(_rqvae_codes(adversarial[::3], seed=7), 32)
        paths.append(tmp_path / f"sid{run}.json")
        write_sid_json(paths[-1], sids)
        write_sid_meta(tmp_path / f"meta{run}.json", meta)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert (tmp_path / "meta0.json").read_bytes() == (tmp_path / "meta1.json").read_bytes()
    meta = json.loads((tmp_path / "meta0.json").read_text())
    assert meta["collisions_after"] == 0


def test_tokens_round_trip(tmp_path):
    assert code_token(0, 12) == "<a_12>" and parse_token("<c_200>") == (2, 200)
    assert level_tokens(1, 3) == ["<b_0>", "<b_1>", "<b_2>"]
    codes = np.array([[12, 3, 200], [0, 0, 0], [255, 255, 1]])
    assert sid_strings(codes)[0] == "<a_12><b_3><c_200>"
    path = tmp_path / "sid.json"
    write_sid_json(path, codes)
    data = json.loads(path.read_text())
    assert data["0"] == ["<a_12>", "<b_3>", "<c_200>"] and list(data) == ["0", "1", "2"]
    got = read_sid_json(path, n_items=3)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, codes)
    for i, toks in enumerate(data.values()):
        assert [parse_token(t)[1] for t in toks] == codes[i].tolist()


@pytest.mark.parametrize("content, n_items, match", [
    ('["<a_1>"]', None, "JSON object"),
    ('{}', None, "no items"),
    ('{"0": ["<a_1>"], "2": ["<a_2>"]}', None, "key '2'"),
    ('{"0": ["<a_1>"], "01": ["<a_2>"]}', None, "key '01'"),
    ('{"0": ["<a_1>"], "x": ["<a_2>"]}', None, "key 'x'"),
    ('{"0": ["<a_1>"], "1": ["<a_2>"]}', 3, "key '2': item missing"),
    ('{"0": ["<a_1>"], "1": ["<a_2>"]}', 1, "key '1'"),
    ('{"0": "<a_1>"}', None, "key '0'.*list"),
    ('{"0": []}', None, "key '0'.*non-empty"),
    ('{"0": ["<a_1>", "b_2"]}', None, "key '0'.*not a SID token"),
    ('{"0": ["<a_1>", "<c_2>"]}', None, "key '0'.*level letter 'b'"),
    ('{"0": ["<a_1>", "<b_2>"], "1": ["<a_1>"]}', None, "key '1'.*1 tokens"),
    ('{"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_3>"], "2": ["<a_1>", "<b_2>"]}', None,
     "key '2'.*duplicate SID: same as item 0"),
    ('{"0": ["<a_1>"', None, "malformed JSON"),
])
def test_read_sid_json_rejects(tmp_path, content, n_items, match):
    path = tmp_path / "sid.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        read_sid_json(path, n_items=n_items)
    assert str(path) in str(info.value)


def test_read_sid_json_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.json: file not found"):
        read_sid_json(tmp_path / "nope.json")
