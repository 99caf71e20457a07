"""RQ-VAE, RQ-KMeans and the torch k-means: training, codes, checkpoints, determinism.

Tiny models and data (a few hundred rows): the whole file runs in seconds on a CPU.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from sidrec.errors import InputError
from sidrec.quantize import (Codes, RQKMeansConfig, RQVAEConfig, encode, kmeans, load_quantizer,
                             save_quantizer, train_quantizer, train_rqkmeans, train_rqvae)
from sidrec.quantize import rqkmeans as rqk
from sidrec.quantize import rqvae

SMALL = dict(hidden_dims=[32, 16], latent_dim=8, levels=3, codebook_size=16, kmeans_iters=10, lr=3e-3)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    """300 x 32 float32: 8 Gaussian clusters."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 32))
    return (centres[rng.integers(0, 8, 300)] + 0.2 * rng.normal(size=(300, 32))).astype(np.float32)


@pytest.fixture(scope="module")
def trained(clustered):
    config = RQVAEConfig(**SMALL, epochs=300)
    model, report = train_rqvae(clustered, config, log=None)
    return model, report, config


def test_loss_decreases(trained):
    _, report, config = trained
    curve = report["loss_curve"]
    assert len(curve["loss"]) == config.epochs and curve["epoch"][-1] == config.epochs
    assert curve["loss"][-1] < 0.25 * curve["loss"][0]
    assert curve["recon_loss"][-1] < 0.25 * curve["recon_loss"][0]
    assert report["final_recon_loss"] < 0.25 * curve["recon_loss"][0]
    assert report["kmeans_init_seconds"] >= 0 and report["train_seconds"] > 0
    assert len(report["codebook_usage"]) == 3 and all(0 < u <= 1 for u in report["codebook_usage"])
    assert 0 <= report["collision_rate"] <= 1


def test_forward_decode_and_encode_agree(trained, clustered):
    model, _, config = trained
    x = torch.from_numpy(clustered)
    with torch.no_grad():
        x_hat, qloss, codes = model.eval()(x)
    assert x_hat.shape == x.shape and qloss.ndim == 0 and codes.shape == (300, config.levels)
    # decoding the returned codes reproduces the forward output (the core invariant)
    torch.testing.assert_close(model.decode_codes(codes), x_hat)
    out = encode(model, clustered)
    assert isinstance(out, Codes)
    assert out.codes.dtype == np.int64 and out.codes.shape == (300, config.levels)
    assert out.last_level_cost.dtype == np.float32
    assert out.last_level_cost.shape == (300, config.codebook_size)
    assert out.codes.min() >= 0 and out.codes.max() < config.codebook_size
    np.testing.assert_array_equal(out.codes, codes.numpy())
    # the item's own last-level code is its cheapest one
    np.testing.assert_array_equal(out.last_level_cost.argmin(1), out.codes[:, -1])


def test_checkpoint_round_trip(trained, clustered, tmp_path):
    model, report, config = trained
    path = tmp_path / "rqvae.ckpt"
    rqvae.save_checkpoint(path, model, config, report)
    raw = torch.load(path, weights_only=True)
    assert raw["method"] == "rqvae" and raw["config"]["input_dim"] == 32
    assert raw["report"]["collision_rate"] == report["collision_rate"]
    q = load_quantizer(path)
    assert q.method == "rqvae" and q.levels == 3 and q.codebook_size == 16
    a, b = encode(model, clustered), q.encode(clustered)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.last_level_cost, b.last_level_cost)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary behind


def test_bad_checkpoints_raise_input_error(trained, tmp_path):
    model, _, config = trained
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(InputError, match="missing.ckpt"):
        load_quantizer(missing)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="garbage.ckpt"):
        load_quantizer(garbage)
    good = tmp_path / "good.ckpt"
    rqvae.save_checkpoint(good, model, config)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated.ckpt"):
        load_quantizer(truncated)
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(Codes, protocol=2))  # an arbitrary global: refused by weights_only
    with pytest.raises(InputError, match="evil.ckpt"):
        load_quantizer(evil)
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(InputError, match="not a quantiser checkpoint"):
        load_quantizer(other)
    wrong = tmp_path / "wrong.ckpt"
    payload = torch.load(good, weights_only=True)
    payload["state_dict"].pop("quantizer.codebooks")
    torch.save(payload, wrong)
    with pytest.raises(InputError, match="wrong.ckpt.*inconsistent"):
        load_quantizer(wrong)
    payload["method"] = "pq"
    torch.save(payload, wrong)
    with pytest.raises(InputError, match="method"):
        load_quantizer(wrong)


def test_same_seed_same_codes_other_seed_other_model(clustered):
    config = RQVAEConfig(**SMALL, epochs=20, seed=3)
    rng_state = torch.get_rng_state()
    a, _ = train_rqvae(clustered, config, log=None)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone
    b, _ = train_rqvae(clustered, config, log=None)
    ca, cb = encode(a, clustered), encode(b, clustered)
    np.testing.assert_array_equal(ca.codes, cb.codes)
    np.testing.assert_array_equal(ca.last_level_cost, cb.last_level_cost)
    c, _ = train_rqvae(clustered, RQVAEConfig(**SMALL, epochs=20, seed=4), log=None)
    assert not torch.equal(a.quantizer.codebooks, c.quantizer.codebooks)


def test_minibatch_sinkhorn_and_long_curve(clustered):
    config = RQVAEConfig(**SMALL, epochs=1100, batch_size=128, sinkhorn=True, sinkhorn_iters=5,
                         kmeans_init=False)
    small = clustered[:130]  # two batches: 128 + 2
    model, report = train_rqvae(small, RQVAEConfig(**{**vars(config), "epochs": 3}), log=None)
    assert report["batch_size"] == 128 and len(report["loss_curve"]["loss"]) == 3
    assert np.isfinite(report["loss_curve"]["loss"]).all()
    assert encode(model, small).codes.shape == (130, 3)
    # a long full-batch run keeps about 1000 curve points, last epoch included
    _, report = train_rqvae(clustered[:40], RQVAEConfig(**{**vars(config), "batch_size": None,
                                                          "sinkhorn": False}), log=None)
    assert 900 <= len(report["loss_curve"]["loss"]) <= 1000 and report["loss_curve"]["epoch"][-1] == 1100


def test_bad_embeddings_raise_input_error(trained, clustered):
    model, _, _ = trained
    bad = clustered.copy()
    bad[5, 3] = np.nan
    with pytest.raises(InputError, match="row 5"):
        train_rqvae(bad, RQVAEConfig(**SMALL, epochs=1), log=None)
    with pytest.raises(InputError, match="input_dim"):
        encode(model, clustered[:, :16])
    with pytest.raises(InputError):
        train_rqvae(np.zeros((0, 32), np.float32), RQVAEConfig(**SMALL, epochs=1), log=None)
    with pytest.raises(ValueError):
        RQVAEConfig(levels=0)


# ---------------------------------------------------------------------------- k-means

def test_kmeans_degenerate_inputs_no_nan():
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    c, a = kmeans(x, 16, iters=10)  # n < k
    assert c.shape == (16, 4) and torch.isfinite(c).all() and a.shape == (5,)
    assert torch.allclose(c[a], x)  # every point is its own centre
    same = torch.ones(50, 4)
    c, a = kmeans(same, 8, iters=10)  # all duplicates
    assert torch.isfinite(c).all() and torch.equal(c[a], same)
    c, a = kmeans(same, 8, iters=10, init="random")
    assert torch.isfinite(c).all()


def test_kmeans_deterministic_and_finds_clusters(clustered):
    x = torch.from_numpy(clustered)
    c1, a1 = kmeans(x, 8, iters=50, seed=1)
    c2, a2 = kmeans(x, 8, iters=50, seed=1)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    # 8 well-separated clusters: k-means++ recovers them (within-cluster spread ~0.2)
    assert float(((x - c1[a1]) ** 2).sum(1).mean()) < 0.1 * 32


# ---------------------------------------------------------------------------- RQ-KMeans

def test_rqkmeans_basics(clustered, tmp_path):
    config = RQKMeansConfig(levels=3, codebook_size=16, iters=10, seed=0)
    q, report = train_rqkmeans(clustered, config, log=None)
    out = q.encode(clustered)
    assert out.codes.shape == (300, 3) and out.codes.dtype == np.int64
    assert out.codes.min() >= 0 and out.codes.max() < 16
    assert out.last_level_cost.shape == (300, 16)
    assert report["level_mse"][0] > report["level_mse"][-1]  # each level explains more
    path = tmp_path / "rqkmeans.ckpt"
    rqk.save_checkpoint(path, q)
    assert torch.load(path, weights_only=True)["method"] == "rqkmeans"
    loaded = load_quantizer(path)
    assert loaded.method == "rqkmeans" and loaded.levels == 3
    again = loaded.encode(clustered)
    np.testing.assert_array_equal(again.codes, out.codes)
    np.testing.assert_array_equal(again.last_level_cost, out.last_level_cost)
    q2, _ = train_rqkmeans(clustered, config, log=None)
    assert torch.equal(q2.codebooks, q.codebooks)  # same seed, same codebooks
    tiny, _ = train_rqkmeans(clustered[:10], config, log=None)  # n < K: torch k-means fallback
    assert torch.isfinite(tiny.codebooks).all()
    with pytest.raises(InputError, match="input_dim"):
        loaded.encode(clustered[:, :8])


# ---------------------------------------------------------------------------- train_quantizer

# The config's flat `quantizer` section, as config/schema.yaml fills it in, at toy sizes.
SECTION = dict(levels=3, codebook_size=16, latent_dim=8, hidden_dims=[32, 16], beta=0.25, dropout=0.0,
               epochs=20, batch_size=None, lr=3e-3, weight_decay=1e-4, kmeans_init=True, kmeans_iters=10,
               sinkhorn=False, sinkhorn_epsilon=0.003, seed=5)


def test_train_quantizer_rqvae_is_train_rqvae(clustered, tmp_path):
    q, report = train_quantizer(clustered, {"method": "rqvae", **SECTION}, device="cpu", log=None)
    model, _ = train_rqvae(clustered, RQVAEConfig(**SECTION), log=None)
    assert q.method == "rqvae" and q.config.input_dim == 32 and q.config.seed == 5
    np.testing.assert_array_equal(q.encode(clustered).codes, encode(model, clustered).codes)
    save_quantizer(tmp_path / "q.ckpt", q, report)
    loaded = load_quantizer(tmp_path / "q.ckpt")
    assert loaded.report["collision_rate"] == report["collision_rate"]
    np.testing.assert_array_equal(loaded.encode(clustered).codes, q.encode(clustered).codes)


def test_train_quantizer_rqkmeans_maps_the_section(clustered, tmp_path):
    # The RQ-VAE-only keys are ignored; kmeans_iters is RQ-KMeans' iters; any device is accepted.
    q, report = train_quantizer(clustered, {"method": "rqkmeans", **SECTION}, device="cuda", log=None)
    assert q.config == RQKMeansConfig(levels=3, codebook_size=16, iters=10, seed=5)
    assert report["device"] == "cpu"
    direct, _ = train_rqkmeans(clustered, q.config, log=None)
    assert torch.equal(q.codebooks, direct.codebooks)
    save_quantizer(tmp_path / "k.ckpt", q)
    np.testing.assert_array_equal(load_quantizer(tmp_path / "k.ckpt").encode(clustered).codes,
                                  q.encode(clustered).codes)


def test_train_quantizer_rejects_bad_sections(clustered):
    with pytest.raises(InputError, match="quantizer.method"):
        train_quantizer(clustered, {"method": "pq"}, log=None)
    with pytest.raises(InputError, match="quantizer.codebook"):
        train_quantizer(clustered, {"codebook": 16}, log=None)
    with pytest.raises(InputError, match="quantizer.iters"):  # RQ-KMeans takes it as kmeans_iters
        train_quantizer(clustered, {"method": "rqkmeans", "iters": 3}, log=None)
    with pytest.raises(InputError, match="levels"):
        train_quantizer(clustered, {"levels": 0}, log=None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_quantizer_on_cuda(clustered, tmp_path):
    q, report = train_quantizer(clustered, SECTION, device="cuda", log=None)
    assert report["device"].startswith("cuda") and q.model.quantizer.codebooks.is_cuda
    save_quantizer(tmp_path / "q.ckpt", q, report)
    loaded = load_quantizer(tmp_path / "q.ckpt")  # on the CPU
    assert torch.equal(loaded.model.quantizer.codebooks, q.model.quantizer.codebooks.cpu())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_matches_eager(clustered):
    config = RQVAEConfig(**SMALL, epochs=30)
    graph, rg = train_rqvae(clustered, config, device="cuda", log=None)
    eager, re = train_rqvae(clustered, config, device="cuda", log=None, cuda_graph=False)
    assert rg["cuda_graph"] and not re["cuda_graph"]
    np.testing.assert_array_equal(encode(graph, clustered).codes, encode(eager, clustered).codes)
    assert rg["loss_curve"]["loss"] == re["loss_curve"]["loss"]
