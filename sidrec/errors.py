"""The one exception type for bad input: it names where the problem is."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input, reported before expensive work starts.

    `source` is a file path or a config name; `line` (1-based) or `key` narrows it down.
    The message reads like ``data/x.csv:17: history cell is not a list of ints``.
    """

    def __init__(self, source, message: str, *, line: int | None = None, key: str | None = None):
        self.source = str(source)
        self.line = line
        self.key = key
        self.reason = message
        where = self.source
        if line is not None:
            where += f":{line}"
        if key is not None:
            where += f": key '{key}'"
        super().__init__(f"{where}: {message}")


def config_from_section(cls, params, section: str):
    """Build the dataclass `cls` from one config section (a dict), naming any key it
    does not have (a typo must fail here, not silently fall back to a default)."""
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(section, f"unknown key(s) {unknown}; expected some of {sorted(known)}")
    return cls(**dict(params))
