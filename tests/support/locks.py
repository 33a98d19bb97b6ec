"""A lock on a folder held by another live process, for the one-writer tests."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

HOLDER = """
import sys, time
from tarot_eval import run_lock
with run_lock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""



@contextmanager
def held_elsewhere(folder):
    """Another process holding the lock of `folder` until the block ends (then killed)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
