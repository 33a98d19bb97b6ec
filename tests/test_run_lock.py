"""One writer per output folder: a second process is refused naming the holder; a killed holder never blocks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from support.locks import HOLDER, held_elsewhere

from tarot_eval import run_lock


def test_a_second_process_is_refused_naming_the_folder_and_the_holder(tmp_path):
    with held_elsewhere(tmp_path / "run") as holder:
        with pytest.raises(run_lock.RunLockedError) as refused:
            run_lock.acquire(tmp_path / "run")
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'run'} is being written by pid {holder.pid} on {socket.gethostname()} since ")
    assert "use another --out" in message and "\n" not in message


def test_a_holder_killed_with_sigkill_never_blocks(tmp_path):
    with held_elsewhere(tmp_path / "run") as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert json.loads((tmp_path / "run" / run_lock.LOCK_NAME).read_text())["pid"] == holder.pid  # left behind
        with run_lock.hold(tmp_path / "run"):  # the kernel dropped the dead holder's lock: taken over at once
            assert json.loads((tmp_path / "run" / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()


def test_reentrant_within_a_process_and_free_for_others_after(tmp_path):
    with run_lock.hold(tmp_path / "run"), run_lock.hold(tmp_path / "run"):
        probe = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(600)", "pass"), str(tmp_path / "run")],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "RunLockedError" in probe.stderr and f"pid {os.getpid()}" in probe.stderr
    assert (tmp_path / "run" / run_lock.LOCK_NAME).read_text() == ""  # released: no holder named
    with held_elsewhere(tmp_path / "run"):
        pass
