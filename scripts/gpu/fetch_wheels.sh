#!/usr/bin/env bash
# Download, here (PyPI reachable), what the GPU machine lacks to run fairseq-layerdrop, into gpu_wheels/
# (ignored by git; carried by the device tool's `run`, see docs/gpu.md).
#
# The GPU machine (docs/gpu.md) has Python 3.12, torch 2.11 with CUDA, numpy 2.x, cython, setuptools, sacrebleu,
# sentencepiece, regex, tqdm, scikit-learn, torchaudio, packaging, PyYAML and matplotlib, and no network. fairseq-fixed
# 0.12.3.1 (setup.py install_requires) adds: hydra-core==1.3.2, omegaconf==2.3.0 (-> antlr4-python3-runtime==4.9.3),
# bitarray, cffi (-> pycparser); and numpy<2, because fairseq 0.12 calls np.compat.long (LM --sample-break-mode eos,
# bucketed pair datasets) and np.percentile(interpolation=), both gone in numpy 2.
#
#   bash scripts/gpu/fetch_wheels.sh            # writes gpu_wheels/ and prints its size
#   WHEELS=/tmp/w311 PYVER=3.11 bash scripts/gpu/fetch_wheels.sh   # the same set for this machine's Python
set -euo pipefail
HERE="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
WHEELS="${WHEELS:-$HERE/gpu_wheels}"
PYVER="${PYVER:-3.12}"  # the GPU machine's Python (3.11: a rehearsal of scripts/gpu/install.sh on this machine)
mkdir -p "$WHEELS"
PLATFORM=(--python-version "$PYVER" --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# one version of each: the GPU side installs every file here with --no-deps
"$PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$WHEELS" \
    hydra-core==1.3.2 omegaconf==2.3.0 "bitarray<4" "cffi<3" "pycparser<3" numpy==1.26.4
# antlr4-python3-runtime 4.9.3 (omegaconf's pin) exists only as a source distribution: build its pure-Python wheel here
[[ -n "$(ls "$WHEELS"/antlr4_python3_runtime-4.9.3-*.whl 2>/dev/null)" ]] \
    || "$PYTHON" -m pip wheel -q --no-deps --no-binary :all: -w "$WHEELS" antlr4-python3-runtime==4.9.3
# fairseq-fixed: source only; its metadata step imports torch, so no build isolation (this environment's torch)
[[ -f "$WHEELS/fairseq_fixed-0.12.3.1.tar.gz" ]] \
    || "$PYTHON" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -d "$WHEELS" fairseq-fixed==0.12.3.1
ls -l "$WHEELS"
du -sh "$WHEELS"
