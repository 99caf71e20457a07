"""Which package files a job runs: the rules' code inputs, derived, never kept by hand.

Snakemake tracks a rule's own script, not the library modules it imports, so each rule
lists those modules as inputs (editing one reruns exactly the jobs that import it).
`package_files` reads the imports with `ast`, starting from the rule's entry point (a
`workflow/scripts/*.py` file or a `sidrec.cli.*` module), and follows them through the
package transitively, lazy imports inside functions included. It never imports the
package: users of `--sdm conda` have it only inside the rules' environment.

Plain Python with no Snakemake in it, so rules/common.smk and the tests share it.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path


def _module_file(root: Path, dotted: str) -> Path | None:
    """`sidrec.a.b` -> root/sidrec/a/b.py or root/sidrec/a/b/__init__.py (None if neither)."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(root: Path, dotted: str) -> list[Path]:
    """The module's file and the __init__.py of every package above it: importing
    `a.b.c` runs a/__init__.py and a/b/__init__.py first."""
    parts = dotted.split(".")
    files = [_module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return [f for f in files if f is not None]


def _dotted_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.lru_cache(maxsize=None)  # every rule's walk reads the same files again
def _imports(root: Path, path: Path, package: str) -> frozenset[str]:
    """Dotted names of the `package` modules that `path` imports (anywhere in it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    inside = path.is_relative_to(root / package)
    here = _dotted_name(root, path) if inside else ""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not inside:
                    continue
                anchor = here.split(".")
                # `from . import x` in a/b.py means package a; in a/__init__.py, a itself.
                drop = node.level - 1 if is_pkg else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from pkg import name`: name may be a submodule.
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return frozenset(n for n in found if n == package or n.startswith(package + "."))


def package_files(entry: str | Path, root: str | Path, package: str = "sidrec") -> list[str]:
    """Every file of `package` (under `root`) that running `entry` may execute, sorted,
    relative to `root`. `entry`: a path to a .py file or a dotted module name."""
    root = Path(root).resolve()
    if str(entry).endswith(".py"):
        start = [Path(entry) if Path(entry).is_absolute() else root / entry]
    else:
        start = _with_parents(root, str(entry))
        if not start or _module_file(root, str(entry)) is None:
            raise FileNotFoundError(f"module {entry} not found under {root}")
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop().resolve()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(root, path, package):
            todo.extend(f for f in _with_parents(root, name) if f.resolve() not in seen)
    files = {p for p in seen if p.is_relative_to(root / package)}
    return sorted(str(p.relative_to(root)) for p in files)
