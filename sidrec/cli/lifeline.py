"""A stage process stops when the workflow that started it is gone.

Killing the workflow (kill -9 of snakemake, a closed terminal) leaves its jobs' shells
alive, and a trainer under them keeps running as an orphan: it holds the CPU or GPU,
and a rerun's trainer then races it for the same scratch checkpoints. Two ties:

- PR_SET_PDEATHSIG (Linux, through ctypes): the kernel sends SIGTERM to this process
  when its parent (the job's shell, or `accelerate launch`) dies.
- A watchdog thread on the process named in $SIDREC_LIFELINE ("host:pid:start", set by
  rules/common.smk to the snakemake process): the job's shell outlives snakemake, so
  the parent tie alone does not fire. The start time (from /proc) tells a reused pid
  apart; on another host (a cluster job) the variable names a process that is not ours
  and is ignored.

Without the variable (a stage run by hand) only the parent tie holds.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time

ENV = "SIDREC_LIFELINE"
_PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or
    None where there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def token(pid: int | None = None) -> str:
    """The $SIDREC_LIFELINE value that names process `pid` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{start_time(pid) or ''}"


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the watchdog alone
    if os.getppid() == 1:  # the parent died before prctl: the signal will never come
        os.kill(os.getpid(), signal.SIGTERM)


def _alive(pid: int, started: str) -> bool:
    now = start_time(pid)
    return now is not None and (not started or now == started)


def _watch(pid: int, started: str) -> None:
    while _alive(pid, started):
        time.sleep(POLL_SECONDS)
    print(f"lifeline: the workflow process {pid} is gone; stopping", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def hold() -> None:
    """Tie this process to its parent and to the workflow process in $SIDREC_LIFELINE."""
    _die_with_parent()
    value = os.environ.get(ENV, "")
    try:
        host, pid, started = value.split(":")
        pid = int(pid)
    except ValueError:
        return
    if host != socket.gethostname() or pid == os.getpid() or start_time(os.getpid()) is None:
        return  # another host's process, this one, or no /proc to watch it through
    threading.Thread(target=_watch, args=(pid, started), name="lifeline", daemon=True).start()
