"""Semantic IDs: codes -> unique per-item token sequences. The one place that knows
the token format (`<a_12>`: level letter, underscore, code)."""
from __future__ import annotations

import re
import string

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
