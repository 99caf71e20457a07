"""SASRec: a causal transformer over the item history, scored against every item.

Made to be comparable with the RecBole 1.2.1 peers (../shared/data/README.md): item
embedding plus learned positions, post-LayerNorm transformer blocks with GELU feed-forward,
output scores tied to the item embedding, full softmax cross-entropy over the catalogue,
Adam, early stopping on valid NDCG@10, full ranking with no masking of history items.

Training objective, and why only the last position: a samples table already holds every
prefix of every user (a user with items a b c d gives (a)->b, (a b)->c, (a b c)->d), so
the loss is taken on each sample's last position only, exactly once per training target.
A loss on every position of every sample would count the early items of each user up to
`max_len` times over and weight users' beginnings far more than their ends; it is also
what RecBole does with such prefix-augmented data (`gather_indexes` at the last item).

Sequences are left-padded to `max_len` with the padding index `n_items`: the newest item
always sits at position `max_len - 1`, so the learned positions count back from "now" (as
in the original SASRec; RecBole right-pads and counts from the oldest item instead), and
the causal mask plus a key-padding mask stop every real position from seeing padding.
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..io import load_checkpoint, save_checkpoint
from ..metrics import ndcg_hr_at_k

CHECKPOINT_FORMAT = "sidrec.sasrec/1"
EVAL_K = 10  # early stopping watches NDCG@10, as the peers do


@dataclass
class SASRecConfig:
    """Model and training options; saved in every checkpoint.

    Every field that config/schema.yaml's `baselines.sasrec` section also has takes the
    schema's default (a test compares them); max_len comes from the dataset's
    max_history, device from the stage.

    The defaults are a CPU budget (about 3 minutes on 2 cores for ml-100k), tuned on valid:
    hidden 64 trains ~2x faster per epoch than 128 for the same valid NDCG at this budget,
    dropout 0.2 learns faster than 0.5 in few epochs, and lr 3e-3 gets further in 8 epochs
    than 1e-3 (5e-3 diverged for 2 seeds of 3 with these post-LN blocks). The peers'
    protocol, early stopping alone deciding, is `max_epochs=200` (patience 10).
    """

    hidden: int = 64          # embedding and transformer width
    layers: int = 2           # transformer blocks
    heads: int = 2            # attention heads; must divide `hidden`
    inner_size: int = 256     # feed-forward width (RecBole's default)
    dropout: float = 0.2      # on embeddings, attention weights and both residual branches
    max_len: int = 20         # newest history items kept (the splits cap history at 20)
    lr: float = 3e-3          # Adam, constant
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 8       # the time budget; early stopping acts within it
    patience: int = 10        # evaluations without a better valid NDCG@10 before stopping
    eval_every: int = 1       # epochs between valid evaluations
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        for name in ("hidden", "layers", "heads", "inner_size", "max_len", "batch_size",
                     "max_epochs", "patience", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class _Dropout(nn.Module):
    """Inverted dropout whose mask comes from 16-bit random integers.

    Same semantics as `nn.Dropout` (drop probability quantised to 1/65536), but on CPU
    `bernoulli_` costs about a quarter of a training step here; drawing 64 random bits
    at a time and splitting them into four 16-bit uniforms is ~3x cheaper. Draws from the
    default generator of the input's device, so `torch.manual_seed` makes it reproducible
    on CPU and CUDA alike.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = int(round(p * 65536)) - 32768  # keep where int16 draw >= this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        draws = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = draws.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return torch.where(keep, x * (1.0 / (1.0 - self.p)), 0.0)


class _Block(nn.Module):
    """Post-LN transformer block (as in RecBole's SASRec): x -> LN(x + attn) -> LN(x + FFN)."""

    def __init__(self, hidden: int, heads: int, inner_size: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attn_dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.drop1 = _Dropout(dropout)
        self.norm1 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, inner_size), nn.GELU(),
                                nn.Linear(inner_size, hidden))
        self.drop2 = _Dropout(dropout)
        self.norm2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x `[B, L, H]`; allowed bool `[B, 1, L, L]` (True: query may attend key).

        Returns `[B, L, H]`, or `[B, 1, H]` (the newest position only) when `last_only`.
        """
        b, length, h = x.shape
        d = h // self.heads
        full = x
        w_q, w_kv = self.qkv.weight.split([h, 2 * h])
        b_q, b_kv = self.qkv.bias.split([h, 2 * h])
        if last_only:
            # Only the newest position is scored, so the last block needs just its query:
            # the keys and values still cover every position. Same output, ~1/L of the
            # query, projection and feed-forward work.
            x, allowed = x[:, -1:], allowed[:, :, -1:]
        q = F.linear(x, w_q, b_q).view(b, -1, self.heads, d).transpose(1, 2)       # [B, nh, Lq, d]
        k, v = F.linear(full, w_kv, b_kv).view(b, length, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0)
        a = a.transpose(1, 2).reshape(b, -1, h)
        x = self.norm1(x + self.drop1(self.proj(a)))
        return self.norm2(x + self.drop2(self.ff(x)))


class SASRec(nn.Module):
    """Scores every catalogue item as the next item of a left-padded history.

    Item ids are 0..n_items-1; `n_items` is the padding index.
    """

    def __init__(self, n_items: int, config: SASRecConfig):
        super().__init__()
        self.n_items = n_items
        self.max_len = config.max_len
        self.item_emb = nn.Embedding(n_items + 1, config.hidden, padding_idx=n_items)
        self.pos_emb = nn.Embedding(config.max_len, config.hidden)
        self.emb_norm = nn.LayerNorm(config.hidden)
        self.emb_drop = _Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            _Block(config.hidden, config.heads, config.inner_size, config.dropout)
            for _ in range(config.layers))
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # RecBole's initialisation: N(0, 0.02) weights, zero biases (padding row stays 0).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def encode(self, seqs: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """seqs int64 `[B, L]` (L <= max_len, left-padded) -> hidden states `[B, L, H]`.

        With `last_only`, only the newest position's state `[B, 1, H]` is computed in the
        last block (what scoring needs).
        """
        _, length = seqs.shape
        is_item = seqs != self.n_items                                            # [B, L]
        # Left padding: position max_len-1 is always the newest item.
        pos = torch.arange(self.max_len - length, self.max_len, device=seqs.device)
        x = self.emb_drop(self.emb_norm(self.item_emb(seqs) + self.pos_emb(pos)))
        causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
        allowed = causal[None] & is_item[:, None, :]                              # [B, Lq, Lk]
        # A padding query (left of the first item) has no allowed key, and an all-masked
        # softmax row is NaN; let it attend to itself. Real queries never attend to padding
        # keys, so these rows' outputs never reach a real position or the loss.
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=seqs.device)[None]
        allowed = allowed[:, None]                                                # [B, 1, Lq, Lk]
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=last_only and i == len(self.blocks) - 1)
        return x

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs `[B, L]` -> logits `[B, n_items]` for the item after the newest one."""
        last = self.encode(seqs, last_only=True)[:, -1]                           # [B, H]
        # Output scores share the item embedding; the padding row is not a candidate.
        return last @ self.item_emb.weight[: self.n_items].T


def encode_histories(histories, n_items: int, max_len: int) -> torch.Tensor:
    """Histories (each oldest first) -> int64 `[rows, max_len]`, left-padded with `n_items`.

    Longer histories keep their newest `max_len` items.
    """
    out = np.full((len(histories), max_len), n_items, dtype=np.int64)
    for row, hist in enumerate(histories):
        hist = np.asarray(hist, dtype=np.int64)[-max_len:]
        if len(hist):
            if hist.min() < 0 or hist.max() >= n_items:
                raise ValueError(f"row {row}: history item outside 0..{n_items - 1}")
            out[row, max_len - len(hist):] = hist
    return torch.from_numpy(out)


@torch.no_grad()
def rank_sasrec(model: SASRec, samples: pd.DataFrame, k: int = 10,
                batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over the full catalogue for each row of a samples table.

    No history item is masked (the peers do not mask either). k is cut to `n_items`.
    Returns ranked int64 `[rows, k]` (best first) and their scores float32 `[rows, k]`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, model.n_items)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    seqs = encode_histories(list(samples["history"]), model.n_items, model.max_len)
    ranked, scores = [], []
    for start in range(0, len(seqs), batch_size):
        top = torch.topk(model(seqs[start:start + batch_size].to(device)), k, dim=1)
        ranked.append(top.indices.cpu())
        scores.append(top.values.float().cpu())
    model.train(was_training)
    if not ranked:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return torch.cat(ranked).numpy().astype(np.int64), torch.cat(scores).numpy().astype(np.float32)


def _fork_devices(device: torch.device) -> list:
    """The CUDA device whose RNG state `fork_rng` saves and restores (none on CPU)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _deterministic(device: torch.device):
    """On CUDA, attention through the math kernel, whose backward is deterministic.

    The memory-efficient kernel that torch picks otherwise may sum its backward in a
    run-dependent order (torch warns so under `use_deterministic_algorithms`). The price,
    measured with the default config on an H200 (torch 2.11, 56k rows, 4 epochs): 2.2-2.7
    against 2.0-2.2 s per epoch at max_len 20, 4.1-5.1 against 3.7-4.5 at max_len 50,
    about 15 %. On CPU nothing changes.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def train_sasrec(train: pd.DataFrame, valid: pd.DataFrame, n_items: int,
                 config: SASRecConfig | None = None,
                 log: Callable[[str], None] | None = print) -> tuple[SASRec, dict]:
    """Train on the last position of every training sample; stop early on valid NDCG@10.

    train/valid: samples tables. Returns the model holding the best-valid weights (eval
    mode) and a JSON-ready report: `epochs` (per epoch: train_loss, valid_ndcg@10,
    valid_hr@10 (None where not evaluated), seconds), `best_epoch`, `best_valid_ndcg@10`,
    `best_valid_hr@10`, `stopped_early`, `seconds`.

    Runs on `config.device` ("cpu" or "cuda"). Deterministic for a fixed seed: on CPU for
    a fixed thread count, on CUDA for a fixed GPU and torch build (see `_deterministic`).
    Initial weights and the shuffling order come from CPU generators, so they are the same
    on both; dropout masks come from the device's generator. The global RNG (and CUDA's)
    is forked, so the caller's random state is left as it was.
    """
    config = config or SASRecConfig()
    log = log or (lambda _msg: None)
    if len(train) == 0 or len(valid) == 0:
        raise ValueError("train and valid must both have rows")
    device = torch.device(config.device)
    t0 = time.perf_counter()
    seqs = encode_histories(list(train["history"]), n_items, config.max_len)
    targets = torch.tensor(np.asarray(train["target"], dtype=np.int64))
    if targets.min() < 0 or targets.max() >= n_items:
        raise ValueError(f"train targets must lie in 0..{n_items - 1}")
    valid_targets = np.asarray(valid["target"], dtype=np.int64)

    seqs, targets = seqs.to(device), targets.to(device)  # the whole training set, once

    with torch.random.fork_rng(devices=_fork_devices(device)), _deterministic(device):
        torch.manual_seed(config.seed)  # seeds the CUDA generator (dropout masks) too
        order_gen = torch.Generator().manual_seed(config.seed)  # shuffling, on CPU
        model = SASRec(n_items, config).to(device)  # initialised on CPU, then moved
        # fused: one kernel for the whole step on CUDA; the CPU keeps torch's default.
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                               **({"fused": True} if device.type == "cuda" else {}))

        epochs, best_ndcg, best_hr, best_epoch, best_state, bad = [], -1.0, 0.0, 0, None, 0
        stopped_early = False
        for epoch in range(1, config.max_epochs + 1):
            te = time.perf_counter()
            model.train()
            perm = torch.randperm(len(seqs), generator=order_gen).to(device)
            losses, sizes = [], []
            for start in range(0, len(perm), config.batch_size):
                idx = perm[start:start + config.batch_size]
                loss = F.cross_entropy(model(seqs[idx]), targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())  # no host sync per step on CUDA
                sizes.append(len(idx))
            # One sync per epoch; summed in Python floats in step order, as loss.item() was.
            total = 0.0
            for value, size in zip(torch.stack(losses).tolist(), sizes):
                total += value * size
            row = {"epoch": epoch, "train_loss": total / len(perm),
                   f"valid_ndcg@{EVAL_K}": None, f"valid_hr@{EVAL_K}": None}
            # Always evaluate the last epoch so a best state exists whatever eval_every is.
            if epoch % config.eval_every == 0 or epoch == config.max_epochs:
                ranked, _ = rank_sasrec(model, valid, EVAL_K)
                # ranked holds min(EVAL_K, n_items) columns: a tiny catalogue is cut there.
                ndcg, hr = ndcg_hr_at_k(ranked, valid_targets, ranked.shape[1])
                row[f"valid_ndcg@{EVAL_K}"], row[f"valid_hr@{EVAL_K}"] = ndcg, hr
                if ndcg > best_ndcg:
                    best_ndcg, best_hr, best_epoch, bad = ndcg, hr, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
            row["seconds"] = time.perf_counter() - te
            epochs.append(row)
            log(f"sasrec epoch {epoch:3d} | loss {row['train_loss']:.4f} | valid ndcg@{EVAL_K} "
                + ("   -   " if row[f'valid_ndcg@{EVAL_K}'] is None else f"{row[f'valid_ndcg@{EVAL_K}']:.4f}")
                + f" | best {best_ndcg:.4f} @ {best_epoch} | {row['seconds']:.1f}s")
            if bad >= config.patience:
                stopped_early = True
                break

    model.load_state_dict(best_state)
    model.eval()
    report = {"epochs": epochs, "best_epoch": best_epoch,
              f"best_valid_ndcg@{EVAL_K}": best_ndcg, f"best_valid_hr@{EVAL_K}": best_hr,
              "stopped_early": stopped_early, "seconds": time.perf_counter() - t0}
    return model, report


def save_sasrec(path, model: SASRec, config: SASRecConfig, report: dict | None = None) -> None:
    """Write weights (on CPU), config, n_items and report as one file, atomically, through
    `sidrec.io.save_checkpoint` (format "sidrec.sasrec/1", readable with
    `torch.load(path, weights_only=True)`)."""
    save_checkpoint(path, CHECKPOINT_FORMAT, {
        "n_items": int(model.n_items),
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "report": report or {},
    })


def load_sasrec(path) -> tuple[SASRec, SASRecConfig, dict]:
    """Read a `save_sasrec` file -> (model on CPU in eval mode, config, report).

    Raises InputError naming the path when the file is missing, unreadable, or not a
    SASRec checkpoint of this format.
    """
    payload = load_checkpoint(path, CHECKPOINT_FORMAT, "SASRec")
    try:
        known = {f.name for f in fields(SASRecConfig)}
        config = SASRecConfig(**{k: v for k, v in payload["config"].items() if k in known})
        model = SASRec(int(payload["n_items"]), config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise InputError(path, f"inconsistent SASRec checkpoint ({type(e).__name__}: {e})") from None
    model.eval()
    return model, config, payload.get("report", {})
