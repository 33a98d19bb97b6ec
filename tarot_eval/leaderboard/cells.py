"""A grid cell's folder: worked on in a sibling `<cell>.partial/`, renamed into place when whole, with a
record of what it was computed from (its identity), what it cost and where it ran.

A cell folder that exists is whole. `tarot_cell.json` holds the identity parts (`identity.py`), the
identity, the cost (wall and CPU seconds, peak resident memory) and the code commit and machine it
ran on (recorded, not part of the identity). What a cell keeps is only what `compare` and the
done-checks read: no copy of any document (see `compact.py`).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from tarot_eval.compare.runs import CELL_RECORD as RECORD_NAME
from tarot_eval.compare.runs import MOVED_ASIDE, PARTIAL

IDENTITY_MARK = ".tarot_identity"  # in a partial folder: the identity of the cell it is working on


def partial_of(folder: Path) -> Path:
    return folder.with_name(folder.name + PARTIAL)


def read_record(folder: Path) -> dict | None:
    """The cell record in `folder`, None when there is none or it cannot be read."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def move_aside(folder: Path) -> Path | None:
    """Rename `folder` to `<folder>.moved-aside-<UTC time>` (never deleted; `compare` skips it); returns
    the new path, None when there was nothing."""
    if not folder.is_dir() or not any(folder.iterdir()):
        if folder.is_dir():
            folder.rmdir()
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder.with_name(f"{folder.name}{MOVED_ASIDE}{stamp}")
    folder.rename(target)
    return target


def reason(folder: Path, parts: dict, ident: str) -> str | None:
    """Why the cell must run; None when `folder` holds it with this identity."""
    from tarot_eval.leaderboard.identity import changed_parts

    if not folder.exists():
        return "resume the interrupted cell" if partial_of(folder).is_dir() else "not computed yet"
    record = read_record(folder)
    if record is None:
        return f"no readable {RECORD_NAME} (folder moved aside)"
    if record.get("identity") == ident:
        return None
    changed = changed_parts(record.get("parts", {}), parts)
    return f"computed from another {', '.join(changed) or 'identity scheme'} (folder moved aside)"


PINNED_COMMIT = "TAROT_EVAL_COMMIT"  # in a pinned install's prefix (scripts/pinned_install.sh): its commit


def code_commit() -> str | None:
    """The commit of the tarot-eval code running: a git checkout's HEAD (+ '-dirty' with local changes), or
    the commit a pinned install was built from."""
    import sys

    from tarot_eval import __file__ as package_file

    root = Path(package_file).resolve().parent.parent
    pinned = Path(sys.prefix) / PINNED_COMMIT
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return pinned.read_text().strip() if pinned.is_file() else None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    import torch

    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def write_record(partial: Path, kind: str, cell: str, parts: dict, ident: str, cost: dict) -> None:
    record = {"cell": cell, "kind": kind, "identity": ident, "parts": parts, "cost": cost,
              "ran_on": {"commit": code_commit(), **machine()},
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (partial / RECORD_NAME).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def put_in_place(partial: Path, folder: Path) -> Path | None:
    """Rename the whole `partial` to `folder`, the folder it replaces moved aside first; returns that."""
    (partial / IDENTITY_MARK).unlink(missing_ok=True)
    moved = move_aside(folder)
    os.replace(partial, folder)
    return moved


def open_partial(folder: Path, ident: str, resumable: bool) -> Path:
    """The working folder of a cell about to run: an interrupted one of the same identity is resumed where
    `resumable` (an optimization's record), any other is removed (it holds no whole result)."""
    partial = partial_of(folder)
    marker = partial / IDENTITY_MARK
    if partial.is_dir():
        same = marker.is_file() and marker.read_text(encoding="utf-8").strip() == ident
        if not (resumable and same):
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    marker.write_text(ident + "\n", encoding="utf-8")
    return partial
