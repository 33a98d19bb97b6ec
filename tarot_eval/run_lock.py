"""One writer per output folder: `optimize`, `rl` and `leaderboard` hold `<folder>/.lock` while they write.

The lock is filelock's OS-level lock (flock), taken without waiting: a second writer fails at once
with `RunLockedError`, naming the folder and the holder's pid and host, which the holder writes into
the lock file as it acquires it. The kernel drops the lock when its process dies (even by SIGKILL),
so a dead holder never blocks the next run; the stale pid left in the file is overwritten. Within
one process the lock is reentrant (one instance per folder), so a run may take it at every level.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".lock"


class RunLockedError(ValueError):
    """Another process is writing to the output folder."""


def _write_holder(fd: int) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def holder(folder: str | Path) -> str:
    """Who holds the lock of `folder`, as the holder wrote it ("pid N on HOST since T")."""
    try:
        info = json.loads((Path(folder) / LOCK_NAME).read_text())
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its pid"


def acquire(folder: str | Path) -> FileLock:
    """Take the lock of `folder` (created if missing) now or raise `RunLockedError`; release it when done."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, timeout=0, thread_local=False, is_singleton=True, on_acquired=_write_holder)
    try:
        lock.acquire()
    except Timeout:
        raise RunLockedError(
            f"{folder} is being written by {holder(folder)} (lock {folder / LOCK_NAME}); "
            "wait for it to finish or use another --out"
        ) from None
    return lock


def release(lock: FileLock) -> None:
    """Give back one hold taken by `acquire`; the last one first clears the holder from the lock file."""
    if lock.lock_counter == 1:
        with suppress(OSError):
            os.truncate(lock.lock_file, 0)
    lock.release()


@contextmanager
def hold(folder: str | Path) -> Iterator[Path]:
    """The lock of `folder` for the body of a `with` block."""
    lock = acquire(folder)
    try:
        yield Path(folder)
    finally:
        release(lock)
