"""Unlock a working directory whose snakemake was killed, and only then.

A snakemake killed with -9 (or by the OOM killer, or a closed session) leaves its lock
in .snakemake/locks, and every later run stops with "Directory cannot be locked" until
someone runs `snakemake --unlock`. Unlocking while another snakemake still runs there
would let two runs write the same files, so this looks for one first: a live process
whose command line is snakemake's and whose working directory (its --directory, else
its cwd) is this one. `make run` calls it before snakemake; any snakemake arguments
given are passed on to `snakemake --unlock`.

    python workflow/unlock_stale.py [snakemake arguments...]

Plain Python (Linux /proc), no Snakemake import: it runs before snakemake does.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _directory(argv: list[str], cwd: Path) -> Path:
    """The working directory a snakemake command line runs in."""
    for i, arg in enumerate(argv):
        if arg in ("--directory", "-d") and i + 1 < len(argv):
            return (cwd / argv[i + 1]).resolve()
        if arg.startswith("--directory="):
            return (cwd / arg.split("=", 1)[1]).resolve()
    return cwd.resolve()


def _is_snakemake(argv: list[str]) -> bool:
    """`snakemake ...`, `python .../bin/snakemake ...` or `python -m snakemake ...`
    (not a job's `python .snakemake/scripts/...`, which runs under one)."""
    if not argv:
        return False
    if Path(argv[0]).name == "snakemake":
        return True
    if "python" in Path(argv[0]).name and len(argv) > 1:
        return Path(argv[1]).name == "snakemake" or argv[1:3] == ["-m", "snakemake"]
    return False


def live_snakemakes(directory: Path) -> list[int]:
    """Pids of the snakemake processes running in `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if _is_snakemake(argv) and _directory(argv[1:], cwd) == directory:
            found.append(int(proc.name))
    return found


def main(argv: list[str]) -> int:
    directory = _directory(argv, Path.cwd())
    locks = directory / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return 0
    live = live_snakemakes(directory)
    if live:
        print(f"unlock_stale: {directory} is locked by running snakemake {live}; leaving it locked",
              file=sys.stderr)
        return 0  # snakemake itself then says the directory is locked
    print(f"unlock_stale: {directory} is locked but no snakemake runs there (a killed run): unlocking",
          file=sys.stderr)
    return subprocess.run([sys.executable, "-m", "snakemake", *argv, "--unlock"], stdout=subprocess.DEVNULL).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
