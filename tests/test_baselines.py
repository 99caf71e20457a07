"""Baselines: popularity counts and ranking, SASRec training, ranking and checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sidrec.baselines.popularity import fit_popularity, rank_popularity
from sidrec.baselines.sasrec import (
    SASRec, SASRecConfig, encode_histories, load_sasrec, rank_sasrec, save_sasrec, train_sasrec)
from sidrec.data.tables import make_samples
from sidrec.errors import InputError
from sidrec.metrics import hit_rate_at_k, ndcg_at_k


# ---------------------------------------------------------------- popularity

def test_popularity_counts_targets_only():
    train = make_samples(["u1", "u1", "u2", "u3"],
                         [[0, 1], [0, 1, 2], [3], [3, 3]],
                         [2, 4, 2, 0])
    counts = fit_popularity(train, n_items=6)
    # History items (1, 3) are not counted; items 1, 3, 5 never appear as targets.
    assert counts.tolist() == [1, 0, 2, 0, 1, 0]
    assert counts.dtype == np.int64


def test_popularity_ties_go_to_lower_id():
    counts = np.array([1, 3, 0, 3, 1, 0])
    ranked = rank_popularity(counts, n_rows=2, k=5)
    assert ranked.shape == (2, 5) and ranked.dtype == np.int64
    assert ranked[0].tolist() == [1, 3, 0, 4, 2]
    assert (ranked[0] == ranked[1]).all()
    assert rank_popularity(counts, n_rows=1, k=100).shape == (1, 6)  # k cut to the catalogue


def test_popularity_rejects_unknown_targets():
    with pytest.raises(ValueError):
        fit_popularity(make_samples(["u"], [[0]], [7]), n_items=3)


# ---------------------------------------------------------------- SASRec

N_ITEMS = 12
CONFIG = SASRecConfig(hidden=32, layers=2, heads=2, inner_size=64, dropout=0.1, max_len=8,
                      lr=5e-3, batch_size=64, max_epochs=6, patience=6, seed=3)


def _cyclic_samples(n_users: int, rng: np.random.Generator, length: int = 14):
    """Users walk the catalogue i -> i+1 mod n from a random start; every prefix a sample.

    Returns train (all prefixes but the last) and valid (the last position) tables.
    """
    tr, va = ([], [], []), ([], [], [])
    for u in range(n_users):
        seq = (rng.integers(N_ITEMS) + np.arange(length)) % N_ITEMS
        for t in range(1, length - 1):
            tr[0].append(u), tr[1].append(seq[max(0, t - CONFIG.max_len):t]), tr[2].append(seq[t])
        va[0].append(u), va[1].append(seq[-1 - CONFIG.max_len:-1]), va[2].append(seq[-1])
    return make_samples(*tr), make_samples(*va)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained():
    train, valid = _cyclic_samples(60, np.random.default_rng(0))
    logs = []
    model, report = train_sasrec(train, valid, N_ITEMS, CONFIG, log=logs.append)
    return train, valid, model, report, logs


def test_sasrec_learns_the_pattern(trained):
    train, valid, model, report, logs = trained
    losses = [e["train_loss"] for e in report["epochs"]]
    assert losses[-1] < 0.5 * losses[0]
    assert len(logs) == len(report["epochs"]) and "loss" in logs[0]
    ranked, _ = rank_sasrec(model, valid, k=1)
    assert (ranked[:, 0] == valid["target"].to_numpy()).mean() > 0.9  # HR@1
    assert report["best_valid_ndcg@10"] > 0.9
    assert 1 <= report["best_epoch"] <= len(report["epochs"])
    assert not model.training


def test_sasrec_parameters_change(trained):
    _, _, model, _, _ = trained
    torch.manual_seed(CONFIG.seed)  # train_sasrec builds its model right after this seed
    init = SASRec(N_ITEMS, CONFIG)
    changed = [name for name, p in init.state_dict().items()
               if not torch.equal(p, model.state_dict()[name])]
    assert "item_emb.weight" in changed and "blocks.1.ff.2.weight" in changed


def test_sasrec_is_deterministic_and_leaves_global_rng_alone(trained):
    train, valid, _, report, _ = trained
    torch.manual_seed(123)
    before = torch.get_rng_state()
    config = SASRecConfig(**{**CONFIG.__dict__, "max_epochs": 2})
    _, r1 = train_sasrec(train, valid, N_ITEMS, config, log=None)
    assert torch.equal(torch.get_rng_state(), before)
    _, r2 = train_sasrec(train, valid, N_ITEMS, config, log=None)
    assert [e["train_loss"] for e in r1["epochs"]] == [e["train_loss"] for e in r2["epochs"]]
    assert r1["epochs"][0]["train_loss"] == report["epochs"][0]["train_loss"]


def test_rank_shapes_and_range(trained):
    _, valid, model, _, _ = trained
    ranked, scores = rank_sasrec(model, valid, k=5, batch_size=7)
    assert ranked.shape == scores.shape == (len(valid), 5)
    assert ranked.dtype == np.int64 and scores.dtype == np.float32
    assert ranked.min() >= 0 and ranked.max() < N_ITEMS  # never the padding index
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    full, _ = rank_sasrec(model, valid, k=100)
    assert full.shape == (len(valid), N_ITEMS)
    assert all(sorted(row) == list(range(N_ITEMS)) for row in full)  # a permutation per row


def test_padding_and_future_items_are_invisible(trained):
    _, _, model, _, _ = trained
    seqs = encode_histories([[1, 2, 3], [5]], N_ITEMS, CONFIG.max_len)
    assert seqs[0].tolist() == [N_ITEMS] * 5 + [1, 2, 3]
    with torch.no_grad():
        base = model(seqs)
        # Key-padding mask: whatever the padding row holds must not reach real positions.
        saved = model.item_emb.weight[N_ITEMS].clone()
        model.item_emb.weight[N_ITEMS] = torch.randn(CONFIG.hidden) * 5
        moved = model(seqs)
        model.item_emb.weight[N_ITEMS] = saved
        assert torch.allclose(base, moved, atol=1e-5)
        # Causal mask: position j's state ignores items after j.
        full = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]])
        other = torch.tensor([[0, 1, 2, 3, 9, 9, 9, 9]])
        assert torch.allclose(model.encode(full)[:, :4], model.encode(other)[:, :4], atol=1e-5)
        # Scoring only the last query in the last block gives the same state.
        assert torch.allclose(model.encode(full)[:, -1], model.encode(full, last_only=True)[:, -1],
                              atol=1e-5)


def test_checkpoint_round_trip(trained, tmp_path):
    _, valid, model, report, _ = trained
    path = tmp_path / "sasrec.pt"
    save_sasrec(path, model, CONFIG, report)
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it
    raw = torch.load(path, weights_only=True)
    assert raw["n_items"] == N_ITEMS and raw["config"]["hidden"] == CONFIG.hidden
    loaded, config, loaded_report = load_sasrec(path)
    assert config == CONFIG and loaded_report["best_epoch"] == report["best_epoch"]
    r1, s1 = rank_sasrec(model, valid, k=10)
    r2, s2 = rank_sasrec(loaded, valid, k=10)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(s1, s2)


def test_bad_checkpoints_raise_input_error(trained, tmp_path):
    _, _, model, _, _ = trained
    with pytest.raises(InputError, match="missing.pt"):
        load_sasrec(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="garbage.pt"):
        load_sasrec(garbage)
    good = tmp_path / "good.pt"
    save_sasrec(good, model, CONFIG)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(InputError, match="truncated.pt"):
        load_sasrec(truncated)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(InputError, match="other.pt"):
        load_sasrec(other)


def test_config_is_checked():
    with pytest.raises(ValueError):
        SASRecConfig(hidden=30, heads=4)
    with pytest.raises(ValueError):
        SASRecConfig(dropout=1.0)


def test_early_stopping_metric_is_metrics_ndcg(trained):
    train, valid, _, _, _ = trained
    # One epoch: the returned model holds exactly the weights that epoch was scored with.
    config = SASRecConfig(**{**CONFIG.__dict__, "max_epochs": 1})
    model, report = train_sasrec(train, valid, N_ITEMS, config, log=None)
    ranked, _ = rank_sasrec(model, valid, k=10)
    targets = valid["target"].to_numpy()
    ndcg = report["epochs"][0]["valid_ndcg@10"]
    assert 0 < ndcg < 1  # a value that tells definitions apart
    assert ndcg == report["best_valid_ndcg@10"] == ndcg_at_k(ranked, targets, 10)
    assert report["best_valid_hr@10"] == hit_rate_at_k(ranked, targets, 10)


def test_tiny_catalogue_scores_what_it_ranks():
    # 5 items < EVAL_K: ranked lists hold all 5, and the early-stopping metric is @5.
    train = make_samples(["u"] * 4, [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]], [1, 2, 3, 4])
    valid = make_samples(["u"], [[1, 2, 3, 4]], [0])
    config = SASRecConfig(hidden=8, heads=2, inner_size=16, max_len=4, max_epochs=1)
    model, report = train_sasrec(train, valid, 5, config, log=None)
    ranked, _ = rank_sasrec(model, valid, k=10)
    assert ranked.shape == (1, 5)
    assert report["best_valid_ndcg@10"] == ndcg_at_k(ranked, valid["target"].to_numpy(), 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sasrec_trains_on_cuda_deterministically(trained, tmp_path):
    train, valid, _, _, _ = trained
    config = SASRecConfig(**{**CONFIG.__dict__, "max_epochs": 2, "device": "cuda"})
    cuda_state = torch.cuda.get_rng_state()
    a, ra = train_sasrec(train, valid, N_ITEMS, config, log=None)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)  # CUDA's RNG is left alone too
    b, rb = train_sasrec(train, valid, N_ITEMS, config, log=None)
    assert next(a.parameters()).is_cuda
    assert [e["train_loss"] for e in ra["epochs"]] == [e["train_loss"] for e in rb["epochs"]]
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    ranked, _ = rank_sasrec(a, valid, k=10)
    assert ra["best_valid_ndcg@10"] == ndcg_at_k(ranked, valid["target"].to_numpy(), 10)
    save_sasrec(tmp_path / "cuda.pt", a, config, ra)  # weights go to the CPU in the file
    loaded, _, _ = load_sasrec(tmp_path / "cuda.pt")
    assert all(torch.equal(v.cpu(), loaded.state_dict()[k]) for k, v in a.state_dict().items())
    np.testing.assert_allclose(rank_sasrec(loaded, valid, k=10)[1], rank_sasrec(a, valid, k=10)[1],
                               rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- SASRec grid selection

def _tables(tmp_path, rng):
    import pandas as pd

    from sidrec.data.tables import Dataset, write_dataset

    train, valid = _cyclic_samples(40, rng)
    test = valid.assign(target=(valid["target"] + 1) % N_ITEMS)
    items = pd.DataFrame({"item_id": np.arange(N_ITEMS), "title": [f"item {i}" for i in range(N_ITEMS)],
                          "text": [f"text {i}" for i in range(N_ITEMS)], "source_id": [str(i) for i in range(N_ITEMS)]})
    write_dataset(Dataset(items, train, valid, test), tmp_path)
    return {name: tmp_path / f"{name}.parquet" for name in ("items", "train", "valid", "test")}


def test_grid_selection_keeps_the_best_valid_candidate_and_ranks_with_it(tmp_path):
    import json

    import pandas as pd

    from sidrec.stages.sasrec import select_sasrec, train_sasrec_candidate

    p = _tables(tmp_path, np.random.default_rng(1))
    base = {k: v for k, v in vars(CONFIG).items() if k not in ("device", "max_len")}
    # one epoch at a tiny lr cannot learn the walk; six at CONFIG's lr do
    grid = {"weak": {**base, "lr": 1e-6, "max_epochs": 1}, "strong": base}
    ckpts, reports = {}, {}
    for name, params in grid.items():
        ckpts[name] = tmp_path / f"{name}.ckpt"
        reports[name] = train_sasrec_candidate(items=p["items"], train=p["train"], valid=p["valid"],
                                               model_out=ckpts[name], params=params, max_len=CONFIG.max_len,
                                               log=None)
    assert reports["strong"]["best_valid_ndcg@10"] > reports["weak"]["best_valid_ndcg@10"]
    out = {s: tmp_path / f"sasrec_{s}.parquet" for s in ("valid", "test")}
    selection = select_sasrec(items=p["items"], candidates=ckpts, model_out=tmp_path / "sasrec.ckpt",
                              selection_out=tmp_path / "selection.json", k=5, log=None,
                              splits={s: (p[s], out[s]) for s in ("valid", "test")})
    assert selection["selected"] == "strong"
    assert json.loads((tmp_path / "selection.json").read_text()) == selection
    assert [c["name"] for c in selection["candidates"]] == ["weak", "strong"]
    assert (tmp_path / "sasrec.ckpt").read_bytes() == ckpts["strong"].read_bytes()
    # the lists are the chosen model's own ranking
    model, _, _ = load_sasrec(ckpts["strong"])
    for split in ("valid", "test"):
        samples = pd.read_parquet(p[split])
        ranked, _ = rank_sasrec(model, samples, k=5)
        got = pd.read_parquet(out[split])
        assert np.array_equal(np.stack(got["ranked"].to_numpy()), ranked)
    # a tie goes to the first candidate listed: the same checkpoint under two names
    tie = select_sasrec(items=p["items"], candidates={"b": ckpts["strong"], "a": ckpts["strong"]},
                        model_out=tmp_path / "tie.ckpt", selection_out=tmp_path / "tie.json", k=5, log=None,
                        splits={})
    assert tie["selected"] == "b"


def test_grid_selection_refuses_nothing_to_choose_from(tmp_path):
    from sidrec.stages.sasrec import select_sasrec

    with pytest.raises(ValueError, match="no SASRec candidates"):
        select_sasrec(items="x", candidates={}, model_out=tmp_path / "m", selection_out=tmp_path / "s",
                      splits={}, k=5, log=None)
    assert not (tmp_path / "m").exists()
