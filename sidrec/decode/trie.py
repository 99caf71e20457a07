"""The catalogue's semantic IDs as a prefix tree held in device tensors.

A node at depth d (0 = root, L = leaf) is one distinct prefix of d codes. Nodes are
numbered per depth (0..n_nodes[d]-1, in lexicographic order of their prefixes), so
every per-depth table is a dense tensor and a beam step is a few gathers:

    child[d]       int32 [n_nodes[d], K_d]  (node, code at level d) -> child node at
                                             depth d+1, or -1 (no item has that prefix)
    node_token[d]  int64 [n_nodes[d]]        vocabulary id of the node's last code
                                             (d >= 1; the token fed to the LM)
    level_tokens[d] int64 [K_d]              code at level d -> vocabulary id (0 where no
                                             item uses the code; masked by `child`)
    leaf_item      int64 [n_items]           leaf node -> item id
    item_tokens    int64 [n_items, L]        item id -> its L vocabulary ids

plus, for sizing wider re-decodes, `below` int64 [L-1, K_0]: how many depth-d nodes
(d = 1..L-1) lie under each level-0 code. Building is vectorised numpy (np.unique per
depth); decoding does no Python work per row or per node.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass(frozen=True)
class SIDTrie:
    n_items: int
    levels: int                       # L
    n_nodes: tuple[int, ...]          # per depth 0..L (n_nodes[0] == 1, n_nodes[L] == n_items)
    codebook_sizes: tuple[int, ...]   # K_d per level 0..L-1
    child: tuple[torch.Tensor, ...]   # L tensors, see module docstring
    node_token: tuple[torch.Tensor | None, ...]  # L+1 entries, None at depth 0
    level_tokens: tuple[torch.Tensor, ...]
    leaf_item: torch.Tensor
    item_tokens: torch.Tensor
    below: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.leaf_item.device

    @classmethod
    def build(cls, codes: np.ndarray, level_token_ids, device="cpu") -> "SIDTrie":
        """codes int [n_items, L] (unique rows, code c of level l < len(level_token_ids[l]));
        level_token_ids: L arrays, level_token_ids[l][c] = vocabulary id of the token of
        code c at level l (-1 allowed for codes no item uses). ValueError on duplicate
        SIDs (naming the items), unmapped codes, or two codes of one level sharing a token.
        """
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"codes must be a non-empty [n_items, L] array, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        codes = codes.astype(np.int64)
        n, L = codes.shape
        if len(level_token_ids) != L:
            raise ValueError(f"level_token_ids has {len(level_token_ids)} levels, codes have {L}")
        if codes.min() < 0:
            raise ValueError("codes must be >= 0")

        tok_tables = []
        for lvl, ids in enumerate(level_token_ids):
            ids = np.asarray(ids, dtype=np.int64).reshape(-1)
            col = codes[:, lvl]
            if col.max() >= ids.size:
                item = int(np.argmax(col >= ids.size))
                raise ValueError(f"item {item}: code {col[item]} at level {lvl} has no token "
                                 f"(level_token_ids[{lvl}] has {ids.size} entries)")
            used = np.unique(col)
            if (ids[used] < 0).any():
                code = int(used[np.argmax(ids[used] < 0)])
                raise ValueError(f"code {code} at level {lvl} is used by an item but has no token id")
            uniq, counts = np.unique(ids[used], return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"level {lvl}: several codes share the vocabulary id {int(uniq[counts > 1][0])}")
            tok_tables.append(ids)

        # Duplicate SIDs would make two items one leaf: name them.
        _, first, inverse, counts = np.unique(codes, axis=0, return_index=True,
                                              return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        if (counts > 1).any():
            groups = [np.flatnonzero(inverse == g).tolist() for g in np.flatnonzero(counts > 1)[:5]]
            desc = "; ".join(f"items {g} share SID {tuple(codes[g[0]].tolist())}" for g in groups)
            more = int((counts > 1).sum()) - len(groups)
            raise ValueError(f"duplicate semantic IDs: {desc}" + (f" (and {more} more groups)" if more else ""))

        # Per depth d: node id of every item's length-d prefix (np.unique orders prefixes
        # lexicographically, so ids are deterministic).
        node_of = [np.zeros(n, dtype=np.int64)]
        n_nodes = [1]
        for d in range(1, L + 1):
            _, inv = np.unique(codes[:, :d], axis=0, return_inverse=True)
            node_of.append(inv.reshape(-1).astype(np.int64))
            n_nodes.append(int(inv.max()) + 1)

        sizes = [int(t.size) for t in tok_tables]
        child, node_token = [], [None]
        for d in range(L):
            table = np.full((n_nodes[d], sizes[d]), -1, dtype=np.int32)
            table[node_of[d], codes[:, d]] = node_of[d + 1]
            child.append(table)
            tok = np.zeros(n_nodes[d + 1], dtype=np.int64)
            tok[node_of[d + 1]] = tok_tables[d][codes[:, d]]
            node_token.append(tok)
        leaf_item = np.empty(n, dtype=np.int64)
        leaf_item[node_of[L]] = np.arange(n)
        item_tokens = np.stack([tok_tables[d][codes[:, d]] for d in range(L)], 1)

        below = np.zeros((max(L - 1, 0), sizes[0]), dtype=np.int64)
        for d in range(1, L):
            # distinct depth-d nodes per level-0 code
            pairs = np.unique(np.stack([codes[:, 0], node_of[d]], 1), axis=0)
            below[d - 1] = np.bincount(pairs[:, 0], minlength=sizes[0])

        dev = torch.device(device)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
        return cls(
            n_items=n, levels=L, n_nodes=tuple(n_nodes), codebook_sizes=tuple(sizes),
            child=tuple(t(c) for c in child),
            node_token=tuple(None if x is None else t(x) for x in node_token),
            level_tokens=tuple(t(np.maximum(ids, 0)) for ids in tok_tables),
            leaf_item=t(leaf_item), item_tokens=t(item_tokens), below=t(below),
        )

    def to(self, device) -> "SIDTrie":
        """The same trie with every tensor on `device` (self if already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device)
            elif isinstance(v, tuple) and any(isinstance(x, torch.Tensor) for x in v):
                v = tuple(None if x is None else x.to(device) for x in v)
            moved[f.name] = v
        return SIDTrie(**moved)

    def items_of(self, leaf_nodes: torch.Tensor) -> torch.Tensor:
        """Leaf node ids (any shape, -1 allowed) -> item ids (-1 stays -1)."""
        return torch.where(leaf_nodes >= 0, self.leaf_item[leaf_nodes.clamp(min=0)], -1)
