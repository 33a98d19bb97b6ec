"""`--jobs N`: the grid's cells in N worker processes on this machine, each with `--threads K` torch threads.

Each worker is a spawned process that keeps its loaded models between cells (`execute.Worker`) and
runs one cell at a time; the driver only hands out cells whose dependencies are done. A worker that
dies mid-cell fails that cell (its partial folder is not trusted) and is replaced; the others go on.
Workers die with the driver (Linux `PR_SET_PDEATHSIG`), so a SIGKILLed driver leaves no orphans, and
a cell is only ever renamed into place whole.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import traceback
from multiprocessing.connection import wait

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the process that started it exits (elsewhere: no-op)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def worker_main(connection, threads: int, evaluation, include_path, include_defaults) -> None:
    """A worker's loop: receive (model spec, step, out), run it, send back (cell, cost or error)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from tarot_eval.leaderboard.execute import Worker, run_cell

    worker = Worker(evaluation, list(include_path), include_defaults, {})
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        spec, step, out = message
        try:
            connection.send((step.name, run_cell(worker, spec, step, out), None))
        except Exception as error:  # reported as the cell's failure; the traceback goes to the log
            connection.send((step.name, None, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


class LocalPool:
    """N persistent worker processes; `run(cells, on_done)` hands each a ready cell at a time."""

    def __init__(self, jobs: int, threads: int, evaluation, include_path, include_defaults: bool):
        self.jobs, self.threads = jobs, threads
        self.args = (threads, evaluation, tuple(include_path), include_defaults)
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict = {}  # connection -> (process, cell name or None)

    def _start(self) -> None:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(theirs, *self.args), daemon=True)
        process.start()
        theirs.close()
        self.workers[mine] = (process, None)

    def close(self) -> None:
        for connection, (process, _) in self.workers.items():
            if process.is_alive():
                process.kill()
            process.join(5)
            connection.close()
        self.workers.clear()

    def run(self, scheduler) -> None:
        """Runs the scheduler's cells until none is ready or running; reports each end to the scheduler."""
        for _ in range(self.jobs):
            self._start()
        try:
            while True:
                for connection, (process, busy) in list(self.workers.items()):
                    if busy is None and (ready := scheduler.next_ready()) is not None:
                        connection.send(ready.message)
                        self.workers[connection] = (process, ready.name)
                        scheduler.started(ready.name)
                running = {connection: state for connection, state in self.workers.items() if state[1] is not None}
                if not running:
                    return
                sentinels = {process.sentinel: connection for connection, (process, _) in running.items()}
                for ready in wait([*running, *sentinels]):
                    connection = sentinels.get(ready, ready)
                    if connection not in self.workers or self.workers[connection][1] is None:
                        continue
                    process, name = self.workers[connection]
                    try:
                        cell, cost, error = connection.recv()
                    except (EOFError, OSError):
                        process.join(5)
                        scheduler.finished(name, None, f"its worker died (exit code {process.exitcode})")
                        connection.close()
                        del self.workers[connection]
                        self._start()
                        continue
                    self.workers[connection] = (process, None)
                    scheduler.finished(cell, cost, error)
        finally:
            self.close()
