"""The grid engine on a reduced copy of configs/leaderboard_smollm2.yaml (two tasks, one seed, every method kind).

    TAROT_DATA_DIR=../shared/data python benchmarks/bench_grid_engine.py --work /tmp/grid-engine [--limit 40]

1. `--jobs 1 --threads 1`, `--jobs 2` and `--executor ray --threads 1` (a local Ray instance whose workers
   compute in folders of their own) into three folders: the wall time of each; sha256 of every saved
   edit and adapter, per-document predictions and cell identities compared across the three.
2. The driver SIGKILLed mid-grid, then the same command again: every cell done once, none lost, no
   orphaned worker (`pgrep`); a worker SIGKILLed mid-cell: that cell fails, the others finish.
3. A task's `doc_to_text` changed (a copy of the task under include_path): exactly its cells re-run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TASKS = ["tarot_navigate", "tarot_color"]


def config(limit: int | None) -> dict:
    base = yaml.safe_load((REPO / "configs/leaderboard_smollm2.yaml").read_text())
    base["tasks"] = {"zero_shot": TASKS}
    base["seeds"] = [0]
    base["optimizer"] = {**base["optimizer"], "n_train": 8, "n_val": 8, "budget": 4}
    methods = base["methods"]
    base["methods"] = {name: methods[name] for name in
                       ("base", "calibrate-batch", "rotation", "rotation+calibrate", "icl-6", "lora", "rescale")}
    base["methods"]["lora"] = {**methods["lora"], "budget": 2}
    base["eval"] = {**base["eval"], "limit": limit}
    return base


def tarot_eval(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "tarot-eval"), "leaderboard", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **options)


def run(args: list[str], **options) -> tuple[int, str, float]:
    started = time.perf_counter()
    process = tarot_eval(*args, **options)
    out, _ = process.communicate()
    return process.returncode, out, time.perf_counter() - started


def fingerprint(out: Path) -> dict:
    found = {}
    for path in sorted(out.rglob("*.safetensors")):
        if ".moved-aside-" not in str(path) and ".partial" not in str(path):
            found[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted(out.glob("runs/**/samples_*.jsonl")):
        if "lm_eval_output" not in path.parts:
            found[str(path.parent.relative_to(out))] = [(line["doc_id"], line["filtered_resps"])
                                                        for line in map(json.loads, path.read_text().splitlines())]
    for path in sorted(out.rglob("tarot_cell.json")):
        found[f"identity {path.parent.relative_to(out)}"] = json.loads(path.read_text())["identity"]
    return found


def settings(out: Path) -> dict:
    """Each optimization's run.json, with paths under `out` written relative to it."""
    return {str(path.parent.relative_to(out)): json.loads(path.read_text().replace(str(out.resolve()) + "/", ""))
            for path in sorted(out.glob("checkpoints/**/run.json"))}


def counts(printed: str) -> str:
    return next((line for line in printed.splitlines() if line.startswith("optimizations:")), "?")


def children(pid: int) -> list[int]:
    return [int(child) for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def alive(pids: list[int]) -> list[int]:
    """The processes of `pids` still running (not zombies)."""
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(pid)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=40, help="test documents per task")
    args = parser.parse_args()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    path = work / "reduced.yaml"
    path.write_text(yaml.safe_dump(config(args.limit), sort_keys=False))

    print("## 1. one process, two worker processes, Ray", flush=True)
    walls = {}
    for name, flags, cwd in (("jobs1", ["--jobs", "1", "--threads", "1"], None), ("jobs2", ["--jobs", "2"], None),
                             ("ray", ["--executor", "ray", "--threads", "1"], work / "elsewhere")):
        if cwd:
            cwd.mkdir()
        code, printed, walls[name] = run(["--config", str(path), "--out", str(work / name), *flags], cwd=cwd)
        print(f"{name}: exit {code}, {walls[name]:.0f} s wall; {counts(printed)}", flush=True)
        if code:
            print(printed[-3000:])
    reference = fingerprint(work / "jobs1")
    for name in ("jobs2", "ray"):
        other = fingerprint(work / name)
        differing = sorted(key for key in set(reference) | set(other) if reference.get(key) != other.get(key))
        print(f"{name} vs jobs1: {len(reference)} entries (edits/adapters by sha256, per-document predictions, identities); "
              f"{'identical' if not differing else f'DIFFER: {differing[:5]}'}; optimization settings equal apart from paths: "
              f"{settings(work / name) == settings(work / 'jobs1')}", flush=True)

    print("\n## 2. a driver SIGKILLed mid-grid, then resumed; a worker SIGKILLed mid-cell", flush=True)
    out = work / "killed"
    process = tarot_eval("--config", str(path), "--out", str(out), "--jobs", "2")
    deadline = time.time() + 600
    while time.time() < deadline and len(list(out.rglob("tarot_cell.json"))) < 5:
        time.sleep(1)
    workers = [pid for pid in children(process.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    process.kill()  # SIGKILL to the driver alone, as `kill -9 PID`: its workers must go with it
    process.wait()
    time.sleep(2)
    whole = sorted(str(p.parent.relative_to(out)) for p in out.rglob("tarot_cell.json"))
    partial = sorted(str(p.relative_to(out)) for p in out.rglob("*.partial"))
    print(f"after SIGKILL of the driver: {len(whole)} whole cells, partial folders {partial}, "
          f"its {len(workers)} workers {workers} still running: {alive(workers) or 'none'}", flush=True)
    stamps = {cell: (out / cell / "tarot_cell.json").stat().st_mtime_ns for cell in whole}
    code, printed, wall = run(["--config", str(path), "--out", str(out), "--jobs", "2"])
    redone = [cell for cell, stamp in stamps.items() if (out / cell / "tarot_cell.json").stat().st_mtime_ns != stamp]
    print(f"resumed: exit {code}, {wall:.0f} s; {counts(printed)}; finished cells re-run: {redone or 'none'}; "
          f"cells now {len(list(out.rglob('tarot_cell.json')))} "
          f"(jobs1 has {len(list((work / 'jobs1').rglob('tarot_cell.json')))}); "
          f"same as jobs1: {fingerprint(out) == reference}", flush=True)

    out = work / "worker-killed"
    process = tarot_eval("--config", str(path), "--out", str(out), "--jobs", "2")
    victim = None
    while process.poll() is None and victim is None:
        busy = [p for p in out.rglob("*.partial") if (p / "lm_eval_output").exists() or (p / "run.json").exists()]
        if busy:
            for pid in children(process.pid):
                if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    victim = int(pid)
                    break
        time.sleep(0.5)
    if victim:
        os.kill(victim, signal.SIGKILL)
    printed, _ = process.communicate()
    failed = [line for line in printed.splitlines() if line.startswith("failed: ")]
    print(f"worker {victim} SIGKILLed mid-cell: exit {process.returncode}; {failed}; "
          f"whole cells {len(list(out.rglob('tarot_cell.json')))}", flush=True)

    print("\n## 3. a task's doc_to_text changed", flush=True)
    task_file = REPO / "tasks/tarot_color.yaml"  # edited in place for the dry run, as a user edits a task, then restored
    original = task_file.read_text()
    try:
        task_file.write_text(original + 'doc_to_text: "Colour code: {{input}}\\nAnswer:"\n')
        code, printed, wall = run(["--config", str(path), "--out", str(work / "jobs1"), "--dry-run"])
    finally:
        task_file.write_text(original)
    rerun = [line for line in printed.splitlines() if line.startswith("run  ")]
    print(f"dry run after the change: {counts(printed)}", flush=True)
    for line in rerun:
        print("  " + line)


if __name__ == "__main__":
    main()
