"""Atomic writes and safe reads: nothing half-written, nothing `eval`ed, and checkpoints
that unpickle nothing but tensors and plain values (`torch.load(weights_only=True)`)."""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError


# Temporary names: ".NAME.tmp-XXXX" beside NAME (a folder being replaced is moved aside
# to ".NAME.old-XXXX"). The fixed infix keeps one output's leftovers apart from another's
# (".sft.tmp-*" never matches ".sft.json.tmp-*").
_TMP, _OLD = "tmp-", "old-"


def _leftovers(path: Path, kind: str):
    return path.parent.glob(f".{glob.escape(path.name)}.{kind}*")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clear_stale_temps(path: Path) -> None:
    """Remove what a killed earlier write of `path` left behind. Safe because one output
    has one writer at a time (Snakemake runs one job per output, under its lock)."""
    for stale in _leftovers(path, _TMP):
        _remove(stale)


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk: a rename is only as durable as the
    data it points at, so files are synced before the rename and the folder after it."""
    is_dir = path.is_dir()
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if is_dir else 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems cannot sync a folder; its files are synced
        if not (is_dir and e.errno in (errno.EINVAL, errno.ENOTSUP)):
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _fsync(Path(folder, name))
        _fsync(Path(folder))


@contextlib.contextmanager
def atomic_path(path, *, suffix: str = ""):
    """Yield a temporary path beside `path`; on success sync it and rename it onto `path`.

    On failure the temporary file is removed and whatever was at `path` stays intact;
    leftovers of a killed earlier write of `path` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_TMP}", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(Path(tmp))
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty temporary folder beside `path`; on success it replaces `path`.

    On failure the temporary folder is removed and whatever was at `path` stays. On
    success every file is synced, an existing `path` is renamed aside, the new folder
    renamed in, the parent folder synced, and only then the old one deleted: a kill
    between any two steps leaves a complete folder under the final name or under the
    aside name (`.NAME.old-*`), never no model at all and never a half-written one.
    Leftovers of such a kill (and of a write killed before its rename) are removed at
    the start of the next write of `path`; an aside copy only once `path` exists again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_temps(path)
    if path.exists():
        for stale in _leftovers(path, _OLD):
            _remove(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TMP}", dir=path.parent))
    aside = None
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_OLD}", dir=path.parent))
            os.replace(path, aside / path.name)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:  # the new one never arrived: put the old one back
            if not path.exists() and (aside / path.name).exists():
                os.replace(aside / path.name, path)
            if not (aside / path.name).exists():
                shutil.rmtree(aside, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def write_json(path, obj, *, indent: int | None = 1) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def read_text(path) -> str:
    """A UTF-8 text file's contents; InputError naming the file (and the line of the first
    byte that is not UTF-8) otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})",
                         line=data.count(b"\n", 0, e.start) + 1) from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs):
    """json.loads hook: a repeated key is an error, not "the last one wins"."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _first_repeated_key(text: str):
    """(key, character offset) of the first key that repeats within one object of the
    valid JSON `text`, or None. The hook above cannot say where a key was (it gets the
    pairs only), so on that error path the text is walked once more, keeping offsets."""
    from json.decoder import WHITESPACE, scanstring

    scalar = json.JSONDecoder().scan_once

    def skip(i):
        return WHITESPACE.match(text, i).end()

    def value(i):  # -> (end, found)
        i = skip(i)
        if text[i] == "{":
            seen, i = set(), skip(i + 1)
            if text[i] == "}":
                return i + 1, None
            while True:
                key, end = scanstring(text, i + 1)
                if key in seen:
                    return end, (key, i)
                seen.add(key)
                i, found = value(skip(end) + 1)  # past the ':'
                if found:
                    return i, found
                i = skip(i)
                if text[i] == "}":
                    return i + 1, None
                i = skip(i + 1)  # past the ','
        if text[i] == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1, None
            while True:
                i, found = value(i)
                if found:
                    return i, found
                i = skip(i)
                if text[i] == "]":
                    return i + 1, None
                i += 1
        return scalar(text, i)[1], None

    return value(0)[1]


def read_json(path):
    """A JSON file, refusing malformed JSON, text that is not UTF-8 and repeated keys
    (each named with the file and line)."""
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise InputError(path, f"malformed JSON: {e.msg}", line=e.lineno) from None
    except _DuplicateKey as e:
        found = _first_repeated_key(text)
        key, line = (found[0], text.count("\n", 0, found[1]) + 1) if found else (str(e), None)
        raise InputError(path, "the same key appears twice in one object (which would win is "
                               "arbitrary)", key=key, line=line) from None


def plain(obj):
    """Deep-convert numpy scalars/arrays, tuples and str subclasses to plain Python values
    (tensors are left as they are), so that `torch.load(weights_only=True)` accepts them:
    it refuses numpy objects and str subclasses such as `torch.__version__`."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _check_weights_only(obj, where: str) -> None:
    """TypeError unless `obj` is tensors and plain values only (dict keys str)."""
    import torch  # torch only in the checkpoint functions: data stages never need it

    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a str")
            _check_weights_only(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_weights_only(v, f"{where}[{i}]")
    elif not (obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor)):
        raise TypeError(f"{where}: {type(obj).__name__} cannot go into a weights_only checkpoint")


def save_checkpoint(path, fmt: str, payload: dict) -> None:
    """Write `{"format": fmt, **payload}` as one torch file, atomically.

    Values are made plain first (`plain`: numpy -> Python, tuples -> lists); anything
    left that is neither a tensor nor a plain value is a TypeError before writing, so the
    file always reads back with `load_checkpoint` (`torch.load(weights_only=True)`).
    """
    import torch

    if "format" in payload:
        raise ValueError("payload must not hold a 'format' key: save_checkpoint sets it")
    payload = {"format": str(fmt), **plain(payload)}
    _check_weights_only(payload, "checkpoint")
    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, fmt: str, what: str) -> dict:
    """Read a `save_checkpoint` file on the CPU -> the payload dict (its "format" included).

    Raises InputError naming `path` when the file is missing, unreadable (truncated, not
    a torch file, or holding objects that `weights_only=True` refuses to unpickle), or
    not tagged `fmt` ("not a {what} checkpoint").
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, disallowed pickle content
        raise InputError(path, f"not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise InputError(path, f"not a {what} checkpoint (expected format {fmt!r})")
    return payload
