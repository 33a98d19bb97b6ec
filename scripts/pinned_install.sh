#!/usr/bin/env bash
# A pinned install of one commit, for background grids: editing the checkout never changes what the
# running workers import. Builds that commit's wheel and installs it alone into DEST (a venv with no
# pip), borrowing the dependencies from .venv by plain path lines (as .ci/wheel_check does).
#   scripts/pinned_install.sh [COMMIT=HEAD] [DEST=../pinned-<commit>]
#   ../pinned-<commit>/bin/tarot-eval leaderboard --config configs/leaderboard_smollm2.yaml --out results/smollm2 --jobs 2
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short "${1:-HEAD}")
dest=$(realpath -m "${2:-../pinned-$commit}")
dev=$PWD/.venv/bin/python
[ -x "$dest/bin/tarot-eval" ] && { echo "$dest"; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git archive "$commit" | tar -xf - -C "$work"
"$dev" -m pip wheel -q --no-deps -w "$work/dist" "$work" >&2
"$dev" -m venv --without-pip "$dest"
"$dev" -m pip --python "$dest/bin/python" install -q --no-deps --no-index "$work"/dist/tarot_eval-*.whl >&2
site=$("$dest/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$dev" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("site-packages")))' > "$site/zz_dependencies.pth"
echo "$commit" > "$dest/TAROT_EVAL_COMMIT"
echo "$dest"
