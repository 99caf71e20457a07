"""Item text -> embeddings with the embedded encoder, and sharding across processes."""
import numpy as np
import pytest

from sidrec.embed import _shard, embed_texts, resolve_encoder
from sidrec.errors import InputError

TEXTS = ["Toy Story (1995); genres: Animation Children's Comedy",
         "GoldenEye (1995); genres: Action Adventure Thriller",
         "Toy Story 2 (1999); genres: Animation Children's Comedy",
         "a"]


def test_default_encoder_is_found_offline():
    assert (resolve_encoder("all-MiniLM-L6-v2") / "model.safetensors").exists()


def test_embeddings_shape_norm_and_similarity():
    emb = embed_texts(TEXTS, batch_size=2, progress=False)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    sim = emb @ emb.T
    # The two Toy Story films are closer to each other than to GoldenEye.
    assert sim[0, 2] > sim[0, 1]


def test_batching_and_order_do_not_change_rows():
    one = embed_texts(TEXTS, batch_size=1, progress=False)
    many = embed_texts(TEXTS, batch_size=16, progress=False)
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_shards_cover_rows_in_rank_order():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            rows = [i for r in range(world) for i in _shard(n, r, world)]
            assert rows == list(range(n))
    sharded = np.concatenate([embed_texts(TEXTS, rank=r, world_size=3, progress=False) for r in range(3)])
    np.testing.assert_allclose(sharded, embed_texts(TEXTS, progress=False), atol=1e-5)


def test_bad_encoder_path_is_named(tmp_path):
    with pytest.raises(InputError, match="encoder.model"):
        resolve_encoder(str(tmp_path / "missing"))
