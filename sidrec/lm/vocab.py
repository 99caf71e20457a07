"""The SID vocabulary of a language model: which tokens a catalogue needs, adding them
to a tokenizer and its embeddings, and looking their ids up again.

Every trainer (SFT, RL) and every decoder (recommend, serving) goes through here, so
the token strings (from `sidrec.sid`) and the seeded rows of new tokens are the same
wherever a model is made or read.
"""
from __future__ import annotations

import numpy as np
import torch

from ..sid import code_token, level_tokens


def sid_vocabulary(sid_codes: np.ndarray) -> list[str]:
    """Every SID token: for each level, codes 0..max used (the codebook as far as the
    catalogue reveals it), in level then code order."""
    codes = np.asarray(sid_codes)
    return [tok for level in range(codes.shape[1])
            for tok in level_tokens(level, int(codes[:, level].max()) + 1)]


def add_sid_tokens(model, tokenizer, sid_codes: np.ndarray, *, seed: int | None = None) -> list[int]:
    """Add the SID tokens to the tokenizer (as added tokens: never split, never merged
    with neighbours), grow the embeddings if needed, and return the ids of every SID
    token (those already there included).

    Rows of newly added tokens are drawn, seeded, from the existing rows' distribution:
    their mean plus Gaussian noise with their per-dimension spread. The mean keeps a new
    logit at an ordinary level (a row of arbitrary scale would start at an arbitrary
    level, and the first steps would mostly undo it); the noise makes the SID tokens
    distinguishable from the first step. Mean-only rows were tried and fail on a
    from-scratch model: its random rows average to ~0, so every SID token started as
    the same near-zero vector, in the input and (tied) in the output; with them the
    tiny model on ml-100k learnt more slowly and stalled more often (bench/ARCHIVE.md).
    """
    from tokenizers import AddedToken

    wanted = sid_vocabulary(sid_codes)
    known = len(tokenizer)
    vocab = tokenizer.get_vocab()
    tokenizer.add_tokens([AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False,
                                     special=False) for t in wanted if t not in vocab])
    ids = [int(i) for i in tokenizer.convert_tokens_to_ids(wanted)]
    new_ids = [i for i in ids if i >= known]
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if new_ids:
        # Some models have spare rows beyond the tokenizer (no resize needed): initialise
        # by token id, not by "rows past the old matrix".
        # `seed` (SFT's, which the run's seed offsets): for a pretrained base these rows
        # are the only randomly initialised weights, so seeds must reach them. None keeps
        # the seed that the numbers before seeding were made with.
        generator = torch.Generator().manual_seed(len(new_ids) if seed is None else int(seed))
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[new_ids] = _rows_like(emb[:known], len(new_ids), generator)
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != emb.data_ptr():
                out.weight[new_ids] = _rows_like(out.weight[:known], len(new_ids), generator)
                if getattr(out, "bias", None) is not None:
                    out.bias[new_ids] = out.bias[:known].mean()
    return ids


def _rows_like(rows: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` rows drawn from N(mean, diag(var)) of `rows` (computed in float32)."""
    ref = rows.float()
    noise = torch.randn(n, ref.shape[1], generator=generator).to(ref.device)
    return (ref.mean(dim=0) + noise * ref.std(dim=0)).to(rows.dtype)


def level_token_ids(tokenizer, codes: np.ndarray) -> list[np.ndarray]:
    """Per level, code -> vocabulary id of its token (-1 for codes no item uses), the
    table `decode.SIDTrie.build` takes. ValueError naming the first token the
    tokenizer lacks (a model trained on another catalogue or SID assignment)."""
    codes = np.asarray(codes)
    out = []
    for level in range(codes.shape[1]):
        size = int(codes[:, level].max()) + 1
        ids = np.full(size, -1, dtype=np.int64)
        for code in np.unique(codes[:, level]):
            tok = tokenizer.convert_tokens_to_ids(code_token(level, code))
            if tok is None or tok == tokenizer.unk_token_id:
                raise ValueError(f"the model's tokenizer has no token {code_token(level, code)}")
            ids[code] = tok
        out.append(ids)
    return out


def greedy_generation_config(tokenizer, sid_length: int):
    """Explicit greedy decoding, so no sampling default of an Instruct base leaks in."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=False, num_beams=1, temperature=1.0, top_p=1.0,
        # 50 is transformers' own default, the value its greedy validation accepts;
        # without sampling it has no effect.
        top_k=50, repetition_penalty=1.0,
        max_new_tokens=sid_length + 1,  # one SID and its eos
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
