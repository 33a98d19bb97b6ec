#!/usr/bin/env bash
# Speed and correctness check on one CUDA GPU with random-weight Qwen2-1.5B, Phi-3-mini and Llama-3-8B
# (shapes from configs in code; no hub, no data dir). Fits in 8 minutes; prints a table at the end.
#
#   bash benchmarks/gpu_check.sh [more benchmarks/gpu_check.py options, e.g. --models llama-3-8b]
#
# Run from anywhere (it cds to the repository root). Needs a python with CUDA torch and this repository
# installed (tarot-eval with lm-eval, transformers, botorch, tokenizers); on a lent GPU machine that
# has only torch, install the rest from wheels that travel with the tree (see gpu_check.py's docstring).
# PYTHON picks the interpreter (default python3). The CPU variant, as CI runs it:
#   .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny
set -euo pipefail
cd "$(dirname "$0")/.."
# the script stops starting checks after 420 s; SIGINT at 470 s makes it print the table of what finished
exec timeout --signal=INT --kill-after=10 470 "${PYTHON:-python3}" benchmarks/gpu_check.py --device cuda "$@"
