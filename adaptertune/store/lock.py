"""One writer per run: an exclusive ``flock`` on ``<run_dir>/.lock`` held while a process trains the run.

Why flock: the kernel drops it when the holder dies (SIGKILL, OOM, a node reboot of a local disk), so a killed shard
never leaves a stale lock behind, and nobody has to guess from a pid whether the holder is alive. The pid, host and
start time written into the file are for humans only; the lock is the open file description, not its content.
A second process that finds the run locked skips it (:class:`RunLocked`) and never writes into the folder.

``history.log`` beside it gets one line per training start and finish, so "every run trained to the end exactly
once" can be checked after the fact (the shard tests do).

Network file systems: flock works on local disks and on NFSv4 / Lustre mounted with flock support; on a file system
without it, give each shard its own runs (``--shard``) and the hash split alone keeps them apart.
"""
from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE, HISTORY_FILE = ".lock", "history.log"


class RunLocked(RuntimeError):
    """Another live process holds the run's lock: skip the run, it is being trained."""


def holder(run_dir: Path) -> str:
    """Who wrote the lock file last (for messages); empty when nobody did."""
    path = Path(run_dir) / LOCK_FILE
    return path.read_text().strip() if path.is_file() else ""


@contextmanager
def run_lock(run_dir: Path, wait: bool = False) -> Iterator[Path]:
    """Hold the run's exclusive lock for the ``with`` body; raise :class:`RunLocked` at once if another process holds
    it (``wait=True`` blocks instead: e.g. a one-time download step that every shard waits for)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunLocked(f"{run_dir.name} is being trained by another process ({holder(run_dir) or 'unknown'}); "
                            "skipped") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()} since {_now()}\n".encode(), 0)
        yield run_dir
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a process about to lock it)


def note(run_dir: Path, event: str) -> None:
    """Append ``event`` with pid, host and time to the run's history (one short line: appends of it do not tear)."""
    line = f"{_now()} {event} pid {os.getpid()} host {socket.gethostname()}\n"
    with open(Path(run_dir) / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(line)


def history(run_dir: Path) -> list[str]:
    """The events of ``history.log`` (``start``, ``finish``, ...), oldest first."""
    path = Path(run_dir) / HISTORY_FILE
    return [line.split()[1] for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["HISTORY_FILE", "LOCK_FILE", "RunLocked", "history", "holder", "note", "run_lock"]
