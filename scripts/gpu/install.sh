#!/usr/bin/env bash
# Install, offline, fairseq-fixed and the plugin on a machine that has Python, torch and most of fairseq's
# dependencies but no fairseq and no network (the GPU machine: docs/gpu.md), from the folder that
# scripts/gpu/fetch_wheels.sh filled. Makes a virtual environment VENV whose own site-packages (numpy<2, hydra,
# omegaconf, bitarray, cffi, fairseq, the plugin) come first and whose .pth file then adds the base Python's
# site-packages (torch with CUDA, sacrebleu, ...). Its bin/ holds fairseq-train & co., so everything that finds
# fairseq's commands beside the interpreter (tests/helpers.py, the recipes' PYTHON=) works unchanged.
#
#   bash scripts/gpu/install.sh                       # BASE=python3 WHEELS=gpu_wheels VENV=/tmp/gpuenv
#   BASE=.venv/bin/python WHEELS=/tmp/w311 VENV=/tmp/rehearse bash scripts/gpu/install.sh   # rehearsal here
# Prints the interpreter to use (VENV/bin/python) on its last line.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
BASE="${BASE:-python3}"
WHEELS="${WHEELS:-$HERE/gpu_wheels}"
VENV="${VENV:-/tmp/gpuenv}"
say() { echo "[install $(date -u +%H:%M:%S)] $*"; }
[[ -f "$WHEELS/fairseq_fixed-0.12.3.1.tar.gz" ]] || { echo "no $WHEELS/fairseq_fixed-0.12.3.1.tar.gz: run scripts/gpu/fetch_wheels.sh here and carry gpu_wheels" >&2; exit 2; }
"$BASE" -c 'import torch' || { echo "$BASE has no torch: set BASE to the Python that holds it" >&2; exit 2; }

if [[ ! -x "$VENV/bin/python" ]]; then
    say "virtual environment $VENV on $("$BASE" -c 'import sys; print(sys.executable)')"
    "$BASE" -m venv --without-pip "$VENV"
    base_site="$("$BASE" -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))')"
    venv_site="$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
    echo "$base_site" > "$venv_site/zz_base_site.pth"   # after the venv's own packages: its numpy<2 wins
fi
PY="$VENV/bin/python"
PIP=("$BASE" -m pip --python "$PY" install -q --no-index --no-deps --ignore-installed --no-cache-dir --disable-pip-version-check)
if "$PY" -c 'import fairseq.data.data_utils_fast, numpy; assert numpy.__version__ < "2"' 2>/dev/null; then
    say "fairseq already in $VENV (a warm machine): only the plugin is reinstalled"
else
say "wheels: $(cd "$WHEELS" && ls *.whl | tr '\n' ' ')"
"${PIP[@]}" "$WHEELS"/*.whl
say "building fairseq-fixed against $("$PY" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)') (C++/Cython extensions, no CUDA ones)"
env -u CUDA_HOME MAX_JOBS="$(nproc)" "${PIP[@]}" --no-build-isolation "$WHEELS/fairseq_fixed-0.12.3.1.tar.gz"
fi
say "installing the plugin"
"${PIP[@]}" --no-build-isolation --force-reinstall "$HERE"
"$PY" - <<'PY'
import fairseq, numpy, torch, hydra, omegaconf, bitarray
import fairseq.data.data_utils_fast, fairseq.data.token_block_utils_fast
print(f"fairseq {fairseq.__version__} numpy {numpy.__version__} torch {torch.__version__} cuda {torch.cuda.is_available()}")
PY
test -x "$VENV/bin/fairseq-train" || { echo "fairseq-train missing from $VENV/bin" >&2; exit 1; }
echo "$PY"
