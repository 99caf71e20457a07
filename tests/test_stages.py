"""The stage functions that rules run (sidrec/stages): paths in, artifacts out, bad input
named before any work."""
import json

import numpy as np
import pytest
import torch

from sidrec.errors import InputError
from sidrec.quantize import load_quantizer
from sidrec.sid import read_sid_json
from sidrec.stages.embeddings import load_embeddings
from sidrec.stages.quantize import fit_quantizer
from sidrec.stages.sid import build_sids

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PARAMS = {"method": "rqvae", "levels": 2, "codebook_size": 8, "latent_dim": 4, "hidden_dims": [16],
          "epochs": 20, "kmeans_iters": 5, "seed": 3}


@pytest.fixture
def embeddings(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 12))
    emb = (centres[rng.integers(0, 6, 50)] + 0.05 * rng.normal(size=(50, 12))).astype(np.float32)
    path = tmp_path / "embeddings.npy"
    np.save(path, emb)
    return path


def test_quantize_then_sid_gives_one_unique_sid_per_item(tmp_path, embeddings):
    report = fit_quantizer(embeddings, tmp_path / "rqvae.ckpt", PARAMS, device="cpu", log=lambda *_: None)
    assert "collision_rate" in report
    assert load_quantizer(tmp_path / "rqvae.ckpt").method == "rqvae"
    meta = build_sids(tmp_path / "rqvae.ckpt", embeddings, tmp_path / "sid.json", tmp_path / "sid.meta.json",
                      codebook_size=8, log=lambda *_: None)
    codes = read_sid_json(tmp_path / "sid.json", n_items=50)  # validates uniqueness
    assert codes.shape[0] == 50 and len({tuple(c) for c in codes}) == 50
    assert meta["collisions_after"] == 0
    assert json.loads((tmp_path / "sid.meta.json").read_text())["quantizer"] == "rqvae"


def test_same_seed_same_sids_other_seed_other_model(tmp_path, embeddings):
    out = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        fit_quantizer(embeddings, tmp_path / f"{name}.ckpt", {**PARAMS, "seed": seed}, log=lambda *_: None)
        build_sids(tmp_path / f"{name}.ckpt", embeddings, tmp_path / f"{name}.json", tmp_path / f"{name}.meta.json",
                   codebook_size=8, log=lambda *_: None)
        out[name] = (tmp_path / f"{name}.json").read_bytes()
    assert out["a"] == out["b"]
    a, c = (torch.load(tmp_path / f"{n}.ckpt", weights_only=True)["state_dict"] for n in "ac")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_an_unknown_quantizer_key_is_named(tmp_path, embeddings):
    with pytest.raises(InputError, match="quantizer.bogus"):
        fit_quantizer(embeddings, tmp_path / "q.ckpt", {**PARAMS, "bogus": 1}, log=lambda *_: None)
    assert not (tmp_path / "q.ckpt").exists()


@pytest.mark.parametrize("content, message", [
    (np.zeros((0, 3), np.float32), "expected a float matrix"),
    (np.zeros((3,), np.float32), "expected a float matrix"),
    (np.array([[1.0, np.nan]], np.float32), "NaN"),
    (np.ones((2, 2), np.int64), "expected a float matrix"),
])
def test_bad_embeddings_are_named(tmp_path, content, message):
    path = tmp_path / "embeddings.npy"
    np.save(path, content)
    with pytest.raises(InputError, match=message) as err:
        load_embeddings(path)
    assert str(path) in str(err.value)


def test_a_pickled_npy_is_refused(tmp_path):
    path = tmp_path / "embeddings.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable"):
        load_embeddings(path)
