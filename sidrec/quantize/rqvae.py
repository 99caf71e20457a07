"""RQ-VAE, as LC-Rec and MiniOneRec train it for semantic IDs.

x [n, D] -> MLP encoder -> z [n, d] -> L residual codebooks (K vectors each) -> z_q ->
mirrored MLP decoder -> x_hat [n, D].

    loss = MSE(x_hat, x) + sum_l ( MSE(q_l, sg[r_l]) + beta * MSE(r_l, sg[q_l]) )

with r_0 = z, r_{l+1} = sg[r_l - q_l], q_l the codebook vector nearest to r_l, and the
straight-through estimator z_q = z + sg[sum_l q_l - z]. The residual handed to the next
level carries no gradient: that is what LC-Rec's code does (it subtracts the
straight-through output, whose gradient cancels), so the commitment terms of levels >= 1
only report a value and the encoder is pulled by level 0 and the reconstruction alone.
LC-Rec averages the per-level losses; we sum them, as the project's brief asks (a factor
L on the quantisation term).

Training is built for MiniOneRec's scale (3,686 x 2,560, 10,000 full-batch epochs): the
data sit on the device once, the loss goes into a preallocated device tensor (no host
sync per epoch), and on CUDA one whole full-batch step is captured as a CUDA graph and
replayed. On one H100 (bench/rqvae_bench.py): 23.5 s of training in full fp32, 13.2 s
with TF32 matmuls, against 50 s launching every kernel from Python.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .codes import Codes, as_embeddings, code_usage, collision_stats, save_payload
from .kmeans import kmeans, nearest, squared_distances

METHOD = "rqvae"
_ENCODE_CHUNK = 65536  # rows per encode batch: bounds memory on huge catalogues
_CURVE_POINTS = 1000   # loss-curve points kept in the report
_GRAPH_WARMUP = 3      # eager epochs before a CUDA graph is captured


@dataclass(kw_only=True)
class RQVAEConfig:
    """Model and training options; saved in every checkpoint.

    Every field that config/schema.yaml's `quantizer` section also has takes the schema's
    default (the pipeline's user-facing default; a test compares them key by key). The
    architecture and optimiser settings are MiniOneRec's RQ-VAE.
    """

    input_dim: int | None = None  # embedding width; None = taken from the data at training
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 32          # codebook vector width
    levels: int = 3               # L residual codebooks
    codebook_size: int = 256      # K codes per level
    beta: float = 0.25            # commitment weight
    dropout: float = 0.0          # before every Linear of encoder and decoder (LC-Rec's place)
    lr: float = 1e-3              # AdamW
    weight_decay: float = 1e-4
    epochs: int = 10000
    batch_size: int | None = None  # None = full batch
    kmeans_init: bool = True      # k-means on the first batch's residuals, level by level
    kmeans_iters: int = 50        # Lloyd iterations of each level's k-means initialisation
    sinkhorn: bool = False        # balanced (Sinkhorn) assignment while training, as LC-Rec's sk
    sinkhorn_epsilon: float = 0.003
    sinkhorn_iters: int = 50
    sinkhorn_levels: list[int] | None = None  # None = last level only (LC-Rec: sk_epsilons 0,0,0.003)
    seed: int = 42

    def __post_init__(self):
        self.hidden_dims = [int(h) for h in self.hidden_dims]
        for name in ("latent_dim", "levels", "codebook_size", "epochs", "kmeans_iters", "sinkhorn_iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.input_dim is not None and self.input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {self.input_dim}")
        if any(h < 1 for h in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive, got {self.hidden_dims}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.beta < 0 or self.lr <= 0 or self.weight_decay < 0 or self.sinkhorn_epsilon <= 0:
            raise ValueError("beta and weight_decay must be >= 0, lr and sinkhorn_epsilon > 0")
        if self.sinkhorn_levels is not None:
            self.sinkhorn_levels = [int(v) for v in self.sinkhorn_levels]
            if any(not -self.levels <= v < self.levels for v in self.sinkhorn_levels):
                raise ValueError(f"sinkhorn_levels {self.sinkhorn_levels} out of range "
                                 f"for {self.levels} levels")

    def sinkhorn_level_set(self) -> frozenset[int]:
        """Levels (0-based) that use Sinkhorn assignment in training; empty if off."""
        if not self.sinkhorn:
            return frozenset()
        chosen = [-1] if self.sinkhorn_levels is None else self.sinkhorn_levels
        return frozenset(v % self.levels for v in chosen)


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    """LC-Rec's MLPLayers: [Dropout] Linear ReLU ... Linear (no activation on the output)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        lin = nn.Linear(a, b)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def sinkhorn_assign(dist: torch.Tensor, *, epsilon: float, iters: int) -> torch.Tensor:
    """Balanced assignment: [B, K] distances -> int64 [B] codes.

    Argmax of the entropic optimal-transport plan with uniform marginals (every code
    gets B/K of the mass), as LC-Rec's `sinkhorn_algorithm`. Distances are first centred
    and scaled into [-1, 1] (LC-Rec's `center_distance_for_constraint`) so epsilon does
    not depend on the data's scale; the iterations run in the log domain in float64
    because exp(-d / 0.003) overflows float32.
    """
    d = dist.double()
    hi, lo = d.max(), d.min()
    mid = (hi + lo) / 2
    logq = -(d - mid) / ((hi - mid + 1e-5) * epsilon)
    for _ in range(iters):
        logq = logq - torch.logsumexp(logq, 0, keepdim=True)  # each code: equal mass
        logq = logq - torch.logsumexp(logq, 1, keepdim=True)  # each item: mass 1
    return logq.argmax(1)


class ResidualQuantizer(nn.Module):
    """L codebooks of K vectors of width `dim`, applied to successive residuals.

    `codebooks` is one parameter [L, K, dim] (initialised uniform(-1/K, 1/K) like LC-Rec's
    nn.Embedding, and normally overwritten by k-means before training).
    """

    def __init__(self, *, levels: int, codebook_size: int, dim: int, beta: float):
        super().__init__()
        self.levels, self.codebook_size, self.dim, self.beta = levels, codebook_size, dim, beta
        self.codebooks = nn.Parameter(
            torch.empty(levels, codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size))

    def forward(self, z: torch.Tensor, *, sinkhorn_levels: frozenset[int] = frozenset(),
                sinkhorn_epsilon: float = 0.003, sinkhorn_iters: int = 50):
        """z [B, dim] -> (z_q [B, dim] straight-through, quantisation loss (scalar), codes int64 [B, L])."""
        residual = z
        total_q = torch.zeros_like(z)
        loss = z.new_zeros(())
        codes = []
        for lvl in range(self.levels):
            book = self.codebooks[lvl]
            r_det = residual.detach()
            dist = squared_distances(r_det, book.detach())
            if lvl in sinkhorn_levels:
                idx = sinkhorn_assign(dist, epsilon=sinkhorn_epsilon, iters=sinkhorn_iters)
            else:
                idx = dist.argmin(1)
            q = F.embedding(idx, book)  # gradient reaches only the chosen codebook rows
            # codebook term moves the codes to the residuals; commitment the reverse
            loss = loss + F.mse_loss(q, r_det) + self.beta * F.mse_loss(residual, q.detach())
            total_q = total_q + q.detach()
            residual = (r_det - q.detach())
            codes.append(idx)
        z_q = z + (total_q - z).detach()  # straight-through: decoder gradient flows into z
        return z_q, loss, torch.stack(codes, 1)

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest-code assignment (no Sinkhorn): z [B, dim] -> (codes int64 [B, L],
        last-level residual [B, dim])."""
        residual = z
        codes = []
        for lvl in range(self.levels):
            idx = nearest(residual, self.codebooks[lvl])
            residual = residual - self.codebooks[lvl][idx]
            codes.append(idx)
        # residual before the last level's subtraction is what the last level quantised
        last = residual + self.codebooks[-1][codes[-1]]
        return torch.stack(codes, 1), last

    @torch.no_grad()
    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes int64 [B, L] -> sum of the chosen codebook vectors [B, dim]."""
        out = self.codebooks[0][codes[:, 0]]
        for lvl in range(1, self.levels):
            out = out + self.codebooks[lvl][codes[:, lvl]]
        return out


class RQVAE(nn.Module):
    """MLP encoder, residual quantiser, mirrored MLP decoder."""

    def __init__(self, *, input_dim: int, hidden_dims=(512, 256, 128), latent_dim: int = 32,
                 levels: int = 3, codebook_size: int = 256, beta: float = 0.25, dropout: float = 0.0):
        super().__init__()
        dims = [int(input_dim), *map(int, hidden_dims), int(latent_dim)]
        self.input_dim = int(input_dim)
        self.encoder = _mlp(dims, dropout)
        self.decoder = _mlp(dims[::-1], dropout)
        self.quantizer = ResidualQuantizer(levels=levels, codebook_size=codebook_size,
                                           dim=latent_dim, beta=beta)

    @classmethod
    def from_config(cls, config: RQVAEConfig) -> "RQVAE":
        if config.input_dim is None:
            raise ValueError("config.input_dim is not set")
        return cls(input_dim=config.input_dim, hidden_dims=config.hidden_dims,
                   latent_dim=config.latent_dim, levels=config.levels,
                   codebook_size=config.codebook_size, beta=config.beta, dropout=config.dropout)

    def forward(self, x: torch.Tensor, **quantizer_kwargs):
        """x [B, D] -> (x_hat [B, D], quantisation loss (scalar), codes int64 [B, L])."""
        z_q, qloss, codes = self.quantizer(self.encoder(x), **quantizer_kwargs)
        return self.decoder(z_q), qloss, codes

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes int64 [B, L] -> reconstruction [B, D] (what forward() returns for them)."""
        return self.decoder(self.quantizer.lookup(codes))


def _loss(model: RQVAE, x: torch.Tensor, qkw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch -> (total loss, reconstruction loss); compiled as a unit with --compile."""
    x_hat, qloss, _ = model(x, **qkw)
    recon = F.mse_loss(x_hat, x)
    return recon + qloss, recon


@torch.no_grad()
def init_codebooks(model: RQVAE, x: torch.Tensor, *, iters: int, seed: int) -> None:
    """k-means each level on the residuals of batch `x` [B, D], level by level."""
    was_training = model.training
    model.eval()  # clean latents: no dropout noise in what the codebooks are fitted to
    residual = model.encoder(x)
    q = model.quantizer
    for lvl in range(q.levels):
        centroids, assign = kmeans(residual, q.codebook_size, iters=iters, seed=seed + lvl)
        q.codebooks[lvl].copy_(centroids)
        residual = residual - centroids[assign]
    model.train(was_training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fork_devices(device: torch.device) -> list:
    return [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []


def train_rqvae(embeddings: np.ndarray, config: RQVAEConfig, device="cpu",
                log: Callable[[str], None] | None = print, *, compile: bool = False,
                cuda_graph: bool = True) -> tuple[RQVAE, dict]:
    """Train an RQ-VAE on `embeddings` float [n, D] -> (model in eval mode, report).

    Fixed `config.seed` -> identical model and codes on CPU (the global RNG is left as it
    was: the seed acts inside a forked RNG state). `compile=True` wraps the loss in
    torch.compile (fuses element-wise kernels; not worth it on CPU for small runs).
    `cuda_graph=True` (full batch on CUDA only) replays one captured training step per
    epoch instead of launching its kernels from Python.

    report: method, n_items, input_dim, device, epochs, batch_size, kmeans_init_seconds,
    train_seconds, epochs_per_second, loss_curve {epoch, loss, recon_loss} (every epoch,
    or about 1000 evenly spaced epochs, last included), final_loss, final_recon_loss
    (whole data set, eval mode), codebook_usage (per level: fraction of codes used),
    collision_rate (fraction of items whose full code tuple is shared), colliding_groups.
    """
    log = log or (lambda _msg: None)
    x_np = as_embeddings(embeddings, input_dim=config.input_dim)
    config = replace(config, input_dim=int(x_np.shape[1]))
    device = torch.device(device)
    n = x_np.shape[0]
    bs = n if config.batch_size is None else min(int(config.batch_size), n)
    n_batches = -(-n // bs)
    qkw = dict(sinkhorn_levels=config.sinkhorn_level_set(), sinkhorn_epsilon=config.sinkhorn_epsilon,
               sinkhorn_iters=config.sinkhorn_iters)

    with torch.random.fork_rng(devices=_fork_devices(device)):
        torch.manual_seed(config.seed)
        model = RQVAE.from_config(config).to(device)
        x = torch.from_numpy(x_np).to(device)
        gen = torch.Generator(device=device).manual_seed(config.seed) if n_batches > 1 else None
        # Mini-batch order for epoch 0 is drawn first so k-means sees its first batch.
        perm = torch.randperm(n, generator=gen, device=device) if n_batches > 1 else None

        _sync(device)
        t0 = time.perf_counter()
        if config.kmeans_init:
            first = x if perm is None else x[perm[:bs]]
            init_codebooks(model, first, iters=config.kmeans_iters, seed=config.seed)
        _sync(device)
        kmeans_seconds = time.perf_counter() - t0
        log(f"rqvae: n={n} dim={config.input_dim} levels={config.levels} K={config.codebook_size} "
            f"batch={bs}x{n_batches} device={device} kmeans_init={kmeans_seconds:.2f}s")

        use_graph = cuda_graph and device.type == "cuda" and n_batches == 1
        opt_kw = {"fused": True} if device.type == "cuda" else {"foreach": True}
        if use_graph:
            opt_kw["capturable"] = True  # optimizer step count lives on the device
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **opt_kw)
        loss_fn = torch.compile(_loss) if compile else _loss
        curve = torch.zeros(config.epochs, 2, device=device)  # [total, recon] per epoch, stays on device
        counter = torch.zeros(1, dtype=torch.long, device=device)  # next row of `curve`, on device
        checkpoints = np.linspace(0, config.epochs, 11).round().astype(int)[1:]

        def full_batch_step():
            # No host sync anywhere in here: the loss row is written by a device-side
            # index, so the same code runs eagerly and inside a captured CUDA graph.
            loss, recon = loss_fn(model, x, qkw)
            loss.backward()
            opt.step()
            curve.index_copy_(0, counter, torch.stack((loss.detach(), recon.detach())).unsqueeze(0))
            counter.add_(1)

        def log_progress(done: int) -> None:
            if done in checkpoints:  # ten host syncs in the whole run
                log(f"rqvae: epoch {done}/{config.epochs} loss {float(curve[done - 1, 0]):.5f} "
                    f"recon {float(curve[done - 1, 1]):.5f}")

        model.train()
        _sync(device)
        t0 = time.perf_counter()
        done = 0
        if use_graph:
            # Full batch on CUDA: an epoch is a few hundred small kernels, so eager
            # launching is CPU-bound (~5 ms/epoch at MiniOneRec's scale on an H100).
            # Capture one whole step (forward, backward, AdamW) as a CUDA graph and
            # replay it. Warm-up steps run eagerly on a side stream, as the PyTorch
            # docs ask, and are real training epochs.
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                while done < min(_GRAPH_WARMUP, config.epochs):
                    full_batch_step()
                    opt.zero_grad(set_to_none=True)
                    done += 1
            torch.cuda.current_stream(device).wait_stream(side)
            log_progress(done)
            if done < config.epochs:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):  # grads are None here: backward allocates them in the graph
                    full_batch_step()
                while done < config.epochs:
                    graph.replay()
                    done += 1
                    log_progress(done)
        elif n_batches == 1:
            while done < config.epochs:
                full_batch_step()
                opt.zero_grad(set_to_none=True)
                done += 1
                log_progress(done)
        else:
            for epoch in range(config.epochs):
                if epoch > 0:
                    perm = torch.randperm(n, generator=gen, device=device)
                for b in range(n_batches):
                    batch = x[perm[b * bs:(b + 1) * bs]]
                    loss, recon = loss_fn(model, batch, qkw)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    curve[epoch, 0].add_(loss.detach(), alpha=1.0 / n_batches)
                    curve[epoch, 1].add_(recon.detach(), alpha=1.0 / n_batches)
                log_progress(epoch + 1)
        _sync(device)
        train_seconds = time.perf_counter() - t0

    model.eval()
    curve_np = curve.cpu().numpy().astype(np.float64)
    keep = np.unique(np.linspace(0, config.epochs - 1, min(config.epochs, _CURVE_POINTS)).round().astype(int))
    codes = encode(model, x_np)
    with torch.no_grad():
        recon_sum = 0.0
        for s in range(0, n, _ENCODE_CHUNK):
            xb = x[s:s + _ENCODE_CHUNK]
            x_hat, _, _ = model(xb)
            recon_sum += float(F.mse_loss(x_hat, xb, reduction="sum"))
    colliding, groups = collision_stats(codes.codes)
    report = {
        "method": METHOD,
        "n_items": int(n),
        "input_dim": int(config.input_dim),
        "device": str(device),
        "epochs": int(config.epochs),
        "batch_size": int(bs),
        "compiled": bool(compile),
        "cuda_graph": bool(use_graph),
        "kmeans_init_seconds": round(kmeans_seconds, 4),
        "train_seconds": round(train_seconds, 4),
        "epochs_per_second": round(config.epochs / max(train_seconds, 1e-9), 2),
        "loss_curve": {"epoch": (keep + 1).tolist(), "loss": curve_np[keep, 0].tolist(),
                       "recon_loss": curve_np[keep, 1].tolist()},
        "final_loss": float(curve_np[-1, 0]),
        "final_recon_loss": recon_sum / (n * config.input_dim),
        "codebook_usage": code_usage(codes.codes, [config.codebook_size] * config.levels),
        "collision_rate": colliding / n,
        "colliding_groups": groups,
        "torch_version": torch.__version__,
    }
    log(f"rqvae: done in {train_seconds:.2f}s ({report['epochs_per_second']} epochs/s) "
        f"recon {report['final_recon_loss']:.5f} usage {[round(u, 3) for u in report['codebook_usage']]} "
        f"collisions {report['collision_rate']:.4f}")
    model.config = config  # the resolved config (input_dim filled in) travels with the model
    return model, report


@torch.no_grad()
def encode(model: RQVAE, embeddings) -> Codes:
    """embeddings float [n, D] -> Codes(codes int64 [n, L], last_level_cost float32 [n, K]).

    Plain nearest-code assignment in eval mode on the model's device (no Sinkhorn: LC-Rec
    also encodes without it; collisions are resolved later by sid.assign_unique_sids).
    """
    x_np = as_embeddings(embeddings, input_dim=model.input_dim)
    was_training = model.training
    model.eval()
    device = model.quantizer.codebooks.device
    codes, costs = [], []
    for s in range(0, x_np.shape[0], _ENCODE_CHUNK):
        xb = torch.from_numpy(x_np[s:s + _ENCODE_CHUNK]).to(device)
        c, last = model.quantizer.assign(model.encoder(xb))
        codes.append(c.cpu())
        costs.append(squared_distances(last, model.quantizer.codebooks[-1]).float().cpu())
    model.train(was_training)
    return Codes(codes=torch.cat(codes).numpy().astype(np.int64),
                 last_level_cost=torch.cat(costs).numpy().astype(np.float32))


def save_checkpoint(path, model: RQVAE, config: RQVAEConfig, report: dict | None = None) -> None:
    """One file, written atomically, readable with `torch.load(path, weights_only=True)`:
    {format, method: "rqvae", config (dict), state_dict (tensors), report (plain values)}."""
    if config.input_dim is None:
        config = replace(config, input_dim=model.input_dim)
    save_payload(path, {
        "method": METHOD,
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "report": report or {},
    })


class RQVAEQuantizer:
    """A trained RQ-VAE (from `train_quantizer` or a checkpoint): `.encode(embeddings) -> Codes`,
    computed on the device the model is on."""

    method = METHOD

    def __init__(self, *, model: RQVAE, config: RQVAEConfig, report: dict):
        self.model, self.config, self.report = model.eval(), config, report

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def encode(self, embeddings) -> Codes:
        """embeddings float [n, D] -> Codes."""
        return encode(self.model, embeddings)

    @classmethod
    def from_payload(cls, path, payload: dict) -> "RQVAEQuantizer":
        """Rebuild from a loaded checkpoint dict; InputError naming `path` if inconsistent."""
        try:
            known = {f.name for f in fields(RQVAEConfig)}
            config = RQVAEConfig(**{k: v for k, v in payload["config"].items() if k in known})
            model = RQVAE.from_config(config)
            state = payload["state_dict"]
            if not isinstance(state, dict):
                raise TypeError("state_dict is not a dict")
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise InputError(path, f"inconsistent RQ-VAE checkpoint ({type(e).__name__}: {e})") from None
        report = payload.get("report", {})
        return cls(model=model, config=config, report=report if isinstance(report, dict) else {})
