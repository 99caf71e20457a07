"""Semantic IDs: codes -> unique per-item token sequences. The one place that knows
the token format (`<a_12>`: level letter, underscore, code)."""
from __future__ import annotations

import json
import re
import string

import numpy as np

from .errors import InputError
from .io import atomic_path, read_json, write_json

LEVEL_LETTERS = string.ascii_lowercase
_TOKEN_RE = re.compile(r"^<([a-z])_(\d+)>$")


def code_token(level: int, code: int) -> str:
    """`code_token(0, 12) == "<a_12>"`."""
    return f"<{LEVEL_LETTERS[level]}_{int(code)}>"


def parse_token(token: str) -> tuple[int, int]:
    """Inverse of `code_token`; ValueError on anything else."""
    m = _TOKEN_RE.match(token)
    if not m:
        raise ValueError(f"not a SID token: {token!r} (expected like '<a_12>')")
    return LEVEL_LETTERS.index(m.group(1)), int(m.group(2))


def level_tokens(level: int, codebook_size: int) -> list[str]:
    """Every token of one level, in code order."""
    return [code_token(level, c) for c in range(codebook_size)]


# --------------------------------------------------------------------------------------
# Codes -> unique semantic IDs
# --------------------------------------------------------------------------------------

# Above this many cost-matrix cells a prefix group is re-spread greedily instead of by
# an exact assignment. Only groups larger than the codebook can get there (they need
# an extra level anyway), e.g. thousands of identical embeddings.
_EXACT_ASSIGNMENT_CELLS = 2_000_000


def _duplicate_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """codes int [n, L] -> (group id per row [n], group sizes): rows with equal tuples
    share a group id."""
    if codes.shape[1] == 0:
        return np.zeros(codes.shape[0], dtype=np.int64), np.array([codes.shape[0]])
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _collisions(codes: np.ndarray) -> dict:
    """{"items": rows whose full tuple is shared, "groups": number of such tuples}."""
    if codes.shape[0] == 0:
        return {"items": 0, "groups": 0}
    _, counts = _duplicate_groups(codes)
    shared = counts[counts > 1]
    return {"items": int(shared.sum()), "groups": int(shared.size)}


def _respread_group(last: np.ndarray, cost: np.ndarray, movable: np.ndarray, k: int) -> np.ndarray:
    """New last-level codes for one prefix group.

    last int [P] current last-level codes, cost float64 [P, K], movable bool [P] (items
    in colliding tuples). Each code takes at most `cap` = max(1, ceil(P / K)) items:
    cap = 1 makes every tuple unique whenever the group fits (P <= K); otherwise the
    items are spread as evenly as possible so the extra level stays short. Fixed
    (non-colliding) items keep their codes; movable ones take the remaining slots at
    minimum total cost.
    """
    p = last.size
    cap = max(1, -(-p // k))
    slots = cap - np.bincount(last[~movable], minlength=k)          # free slots per code
    slot_code = np.repeat(np.arange(k), slots)                       # [S], S >= movable.sum()
    rows = np.flatnonzero(movable)
    out = last.copy()
    if rows.size * slot_code.size <= _EXACT_ASSIGNMENT_CELLS:
        from scipy.optimize import linear_sum_assignment
        r, c = linear_sum_assignment(cost[rows][:, slot_code])
        out[rows[r]] = slot_code[c]
    else:
        # Greedy fallback for huge overflow groups: items in index order take their
        # cheapest code that still has a slot. Deterministic, O(rows * K).
        for i in rows:
            ok = slots > 0
            code = int(np.flatnonzero(ok)[np.argmin(cost[i, ok])])
            out[i] = code
            slots[code] -= 1
    return out


def assign_unique_sids(codes, codebook_size: int) -> tuple[np.ndarray, dict]:
    """Make every item's code tuple unique: `codes` (a quantize.Codes: codes int [n, L],
    last_level_cost [n, K]) -> (sids int64 [n, L] or [n, L + e], meta).

    1. Re-spread: within each prefix (first L-1 codes) holding a collision, the items
       of colliding tuples are moved to last-level codes that are free in that prefix,
       minimising the summed `last_level_cost` (squared distance of the item's last
       residual to the code) with an exact assignment (scipy's linear_sum_assignment).
       LC-Rec re-spreads by re-running Sinkhorn on the colliding items until no
       collision is left; that loop has no guarantee to terminate or to respect codes
       already held by other items of the prefix, and its result depends on epsilon and
       iteration counts. The assignment is exact, deterministic and finishes in one pass.
    2. Extra level: a prefix holding more than K items cannot be made unique in L
       levels; its items are spread evenly over the K codes, and the remaining
       duplicates are numbered 0, 1, ... (closest to its code first) in one extra level
       (more only if a tuple is shared by more than K items). If any item needs it, EVERY
       item gets it (0 where none was needed), so all SIDs have one length and no SID
       is a prefix of another.

    meta: n_items, levels, codebook_sizes (per level; extra levels list the codes they
    use), usage (per level, fraction of codebook_sizes used), collisions_before
    {items, groups}, respread_items, collisions_after (items sharing a SID: always 0),
    extra_level (bool), extra_levels, extra_level_items (items with a nonzero extra code).
    """
    c = np.array(codes.codes, dtype=np.int64, copy=True)
    cost = np.asarray(codes.last_level_cost, dtype=np.float64)
    k = int(codebook_size)
    if c.ndim != 2 or c.shape[1] < 1:
        raise ValueError(f"codes must be [n, L] with L >= 1, got shape {c.shape}")
    n, levels = c.shape
    if cost.shape != (n, k):
        raise ValueError(f"last_level_cost must be [{n}, {k}], got {cost.shape}")
    if n and (c.min() < 0 or c.max() >= k):
        raise ValueError(f"codes must lie in 0..{k - 1}")
    if not np.isfinite(cost).all():
        raise ValueError("last_level_cost has NaN or inf")

    before = _collisions(c)
    respread = 0
    if before["items"]:
        group, sizes = _duplicate_groups(c)
        colliding = sizes[group] > 1
        prefix, _ = _duplicate_groups(c[:, :-1])
        order = np.argsort(prefix, kind="stable")           # prefix groups, items in index order
        bounds = np.flatnonzero(np.diff(prefix[order])) + 1
        for members in np.split(order, bounds):
            movable = colliding[members]
            if not movable.any():
                continue
            new = _respread_group(c[members, -1], cost[members], movable, k)
            respread += int((new != c[members, -1]).sum())
            c[members, -1] = new

    after_respread = _collisions(c)
    extra = np.zeros((n, 0), dtype=np.int64)
    if after_respread["items"]:
        group, sizes = _duplicate_groups(c)
        n_extra = 1
        while k ** n_extra < sizes.max():
            n_extra += 1
        # rank within each duplicate tuple: closest to its last-level code first, then index
        own_cost = cost[np.arange(n), c[:, -1]]
        order = np.lexsort((np.arange(n), own_cost, group))
        starts = np.zeros(sizes.size, dtype=np.int64)
        starts[1:] = np.cumsum(sizes)[:-1]
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[group[order]]
        extra = np.stack([(rank // k ** (n_extra - 1 - j)) % k for j in range(n_extra)], 1)
    sids = np.concatenate([c, extra], 1)
    if sids.shape[1] > len(LEVEL_LETTERS):
        raise ValueError(f"{sids.shape[1]} levels exceed the {len(LEVEL_LETTERS)} level letters")

    after = _collisions(sids)
    if after["items"]:  # cannot happen: ranks are distinct within every shared tuple
        raise RuntimeError(f"assign_unique_sids left {after['items']} items with shared SIDs")
    sizes_per_level = [k] * levels + [int(extra[:, j].max()) + 1 for j in range(extra.shape[1])]
    meta = {
        "n_items": int(n),
        "levels": int(sids.shape[1]),
        "codebook_sizes": sizes_per_level,
        "usage": [float(np.unique(sids[:, j]).size / s) if n else 0.0
                  for j, s in enumerate(sizes_per_level)],
        "collisions_before": before,
        "respread_items": respread,
        "collisions_after_respread": after_respread,
        "collisions_after": after["items"],
        "extra_level": bool(extra.shape[1]),
        "extra_levels": int(extra.shape[1]),
        "extra_level_items": int((extra != 0).any(1).sum()) if extra.shape[1] else 0,
    }
    return sids, meta


# --------------------------------------------------------------------------------------
# Token strings and sid.json
# --------------------------------------------------------------------------------------

def _check_codes(codes) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"codes must be an integer [n, L] array, got {arr.dtype} {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError("codes must be >= 0")
    if arr.shape[1] > len(LEVEL_LETTERS):
        raise ValueError(f"{arr.shape[1]} levels exceed the {len(LEVEL_LETTERS)} level letters")
    return arr


def sid_tokens(codes) -> list[list[str]]:
    """codes int [n, L] -> per item its L tokens, e.g. ["<a_12>", "<b_3>", "<c_200>"]."""
    arr = _check_codes(codes)
    return [[code_token(lvl, v) for lvl, v in enumerate(row)] for row in arr.tolist()]


def sid_strings(codes) -> list[str]:
    """codes int [n, L] -> per item the concatenated tokens, e.g. "<a_12><b_3><c_200>"."""
    return ["".join(toks) for toks in sid_tokens(codes)]


def write_sid_json(path, codes) -> None:
    """Write `{"0": ["<a_12>", "<b_3>", "<c_200>"], "1": [...], ...}` atomically, one item
    per line (the bytes depend only on the codes, so equal codes -> identical files)."""
    lines = [f'"{i}": {json.dumps(toks)}' for i, toks in enumerate(sid_tokens(codes))]
    text = "{\n" + ",\n".join(lines) + ("\n}\n" if lines else "}\n")
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_sid_meta(path, meta: dict) -> None:
    """Write the metadata of `assign_unique_sids` as JSON, atomically."""
    write_json(path, meta)


def read_sid_json(path, n_items: int | None = None) -> np.ndarray:
    """Read and validate a sid.json -> codes int64 [n, L].

    Checks: an object whose keys are exactly "0".."n-1" (n = n_items, or the number of
    keys); each value a non-empty list of tokens whose level letters run a, b, c, ...;
    all of one length; no two items with the same SID. InputError naming the path (and
    the item key) otherwise.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object mapping item id to a list of SID tokens")
    n = len(data) if n_items is None else int(n_items)
    if n == 0:
        raise InputError(path, "no items")
    for key in data:
        if not (key.isdigit() and str(int(key)) == key and int(key) < n):
            raise InputError(path, f"item ids must be the strings '0'..'{n - 1}'", key=key)
    if len(data) != n:
        missing = next(str(i) for i in range(n) if str(i) not in data)
        raise InputError(path, f"item missing ({len(data)} items for n_items={n})", key=missing)

    out = None
    for i in range(n):
        key = str(i)
        value = data[key]
        if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
            raise InputError(path, "expected a non-empty list of SID tokens", key=key)
        if out is None:
            out = np.empty((n, len(value)), dtype=np.int64)
        elif len(value) != out.shape[1]:
            raise InputError(path, f"SID has {len(value)} tokens, item 0 has {out.shape[1]}", key=key)
        for lvl, token in enumerate(value):
            try:
                got_level, code = parse_token(token)
            except ValueError as e:
                raise InputError(path, str(e), key=key) from None
            if got_level != lvl:
                raise InputError(path, f"token {token!r} at position {lvl} should have level letter "
                                       f"'{LEVEL_LETTERS[lvl]}'", key=key)
            out[i, lvl] = code

    group, sizes = _duplicate_groups(out)
    if (sizes > 1).any():
        dup_group = np.flatnonzero(sizes > 1)[0]
        first, second = np.flatnonzero(group == dup_group)[:2]
        raise InputError(path, f"duplicate SID: same as item {first}", key=str(second))
    return out
