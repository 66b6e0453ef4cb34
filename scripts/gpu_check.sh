#!/usr/bin/env bash
# The GPU run of issue 16, as one prepared command (docs/gpu.md): on a bare GPU machine, install what was
# carried, then run the GPU tests, the GPU benchmark and the convergence runs (PTB with the mini LM recipe's
# four models, the mini translation recipe), each part time-boxed, writing everything to one results folder.
#
#   bash scripts/gpu_check.sh [RESULTS]      # RESULTS defaults to $OUT (the device tool's), else ./gpu_results
#   TINY=1 bash scripts/gpu_check.sh /tmp/r  # the CPU dry run: tiny sizes, this checkout's .venv, no install;
#                                            # the CUDA-only tests skip with their reason
#
# Parts and their time boxes in seconds (each killed at its box; the next part still runs), and which run:
#   INSTALL_S=180 TESTS_S=60 BENCH_S=80 LM_S=110 MT_S=50 (480 s in all; the fairseq build
#   compiles six C++/Cython extensions one after another, about 3 minutes on 2 idle cores here)   PARTS="tests bench lm mt"
# A second call on a still-warm machine skips the install (the venv in /tmp is kept); PARTS= reruns a subset.
# Results (the device tool returns at most 8 files): RESULTS/summary.md (parts, times, exit codes, versions, the
# test outcome, the benchmark table, the convergence and sweep tables), tests.txt, bench.json, lm.png, mt.png,
# logs.tar.gz (every log, sweep, search and curve; no checkpoints).
set -uo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
RESULTS="${1:-${OUT:-$HERE/gpu_results}}"
mkdir -p "$RESULTS" && RESULTS="$(cd "$RESULTS" && pwd)"
WORK="${WORK:-$(mktemp -d /tmp/gpu_check.XXXX)}"
LOGS="$WORK/logs"; mkdir -p "$LOGS"
TINY="${TINY:-0}"
PARTS="${PARTS:-tests bench lm mt}"
wants() { [[ " $PARTS " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
START=$(date +%s)
say() { echo "[gpu_check $(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
SUMMARY="$RESULTS/summary.md"
echo "# GPU check $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')" > "$SUMMARY"
echo "| part | seconds | exit | box (s) |" >> "$SUMMARY"; echo "|---|---|---|---|" >> "$SUMMARY"

# part NAME BOX_SECONDS COMMAND...: run one part under its time box, log to $LOGS/NAME.log, record it
part() {
    local name=$1 box=$2 t0 rc; shift 2
    say "$name: start (box ${box}s, log $LOGS/$name.log)"
    t0=$(date +%s)
    timeout --kill-after=10 "$box" "$@" > "$LOGS/$name.log" 2>&1; rc=$?
    (( rc == 124 || rc == 137 )) && say "$name: TIME BOX of ${box}s reached (exit $rc)"
    say "$name: exit $rc after $(( $(date +%s) - t0 ))s; last lines:"; tail -n 5 "$LOGS/$name.log"
    echo "| $name | $(( $(date +%s) - t0 )) | $rc | $box |" >> "$SUMMARY"
    return 0
}

# the paper's four PTB models (the LM box is shared among them; mini_lm.sh trains seven by default)
LM_MODELS=layerdrop,baseline,scratch4,gated
MT_MODELS=layerdrop,baseline,scratch3,distill  # as prepared (mini_mt.sh's distill_eq came later)
if [[ "$TINY" == 1 ]]; then
    PY="${PYTHON:-$HERE/.venv/bin/python}"
    # generous boxes: on this shared 2-core machine under load a fairseq command can take a minute to start
    INSTALL_S=0; TESTS_S="${TESTS_S:-300}"; BENCH_S="${BENCH_S:-900}"; LM_S="${LM_S:-1200}"; MT_S="${MT_S:-1200}"
    LM_SETTINGS=(SMOKE=1 SMOKE_UPDATES=12 PARALLEL=0 DEVICE_ARGS=--cpu "TRAIN_ARGS=--patience 2" "MODEL_NAMES=$LM_MODELS")
    MT_SETTINGS=(SMOKE=1 SMOKE_UPDATES=12 PARALLEL=0 DEVICE_ARGS=--cpu "TRAIN_ARGS=--patience 2" "MODEL_NAMES=$MT_MODELS")
    TEST_ARGS=(tests/gpu)
    BENCH_ARGS=(--tiny --rounds 1)
    LM_DATA_SRC=""; MT_DATA_SRC=""
else
    INSTALL_S="${INSTALL_S:-180}"; TESTS_S="${TESTS_S:-60}"; BENCH_S="${BENCH_S:-80}"; LM_S="${LM_S:-110}"; MT_S="${MT_S:-50}"
    # training stops at --stop-time-hours (each model's share of the part's box) or when validation perplexity
    # has not improved for --patience epochs; then the recipe's search, sweeps and plot run on checkpoint_best
    # (time left for the search, sweeps and plot: 40 s of the LM box, 25 s of the MT box; each model its share)
    LM_HOURS=$(awk "BEGIN { printf \"%.4f\", ($LM_S - 40) / 4 / 3600 }")
    MT_HOURS=$(awk "BEGIN { printf \"%.4f\", ($MT_S - 25) / 2 / 3600 }")
    LM_SETTINGS=(PARALLEL=0 DEVICE_ARGS=--fp16 "TRAIN_ARGS=--patience 3 --stop-time-hours $LM_HOURS" UPDATES=100000
                 "MODEL_NAMES=$LM_MODELS"
                 DIM=512 TOKENS=8192 WARMUP=400 DEPTHS=8,6,4,2 STRATEGIES=every-other SEARCH_BUDGET=20)
    MT_SETTINGS=(PARALLEL=0 DEVICE_ARGS=--fp16 "TRAIN_ARGS=--patience 3 --stop-time-hours $MT_HOURS" UPDATES=100000
                 DIM=256 TOKENS=8192 LR=0.002 DEPTHS=6,3 STRATEGIES=every-other STACKS=both "MODEL_NAMES=$MT_MODELS")
    TEST_ARGS=(tests/gpu -n 8)
    BENCH_ARGS=(--rounds 2 --updates 60)
    LM_DATA_SRC="$HERE/gpu_data/mini_lm/bin"; MT_DATA_SRC="$HERE/gpu_data/mini_mt/bin"
fi
say "results in $RESULTS, work in $WORK; tiny=$TINY"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$LOGS/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$LOGS/nvidia-smi.txt"

# (a) install what was carried (gpu_wheels/: scripts/gpu/fetch_wheels.sh) into a venv over the machine's torch
if [[ "$TINY" != 1 ]]; then
    part install "$INSTALL_S" bash "$HERE/scripts/gpu/install.sh"
    PY="$(tail -n 1 "$LOGS/install.log")"
    [[ -x "$PY" ]] || { say "install failed: nothing else can run"; cp "$LOGS/install.log" "$RESULTS/"; exit 1; }
fi
"$PY" -c 'import torch, fairseq, numpy; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "fairseq", fairseq.__version__, "numpy", numpy.__version__)' | tee "$LOGS/versions.txt"

# (b) the GPU tests (tests/gpu, marker gpu): they skip with their reason where CUDA is absent
if wants tests; then
part tests "$TESTS_S" bash -c "cd '$HERE' && '$PY' -m pytest -q -rs -p no:cacheprovider ${TEST_ARGS[*]@Q}"
grep -E "passed|failed|skipped|error" "$LOGS/tests.log" | tail -n 1 > "$RESULTS/tests.txt"
grep -E "^(FAILED|ERROR|SKIPPED)" "$LOGS/tests.log" >> "$RESULTS/tests.txt"
fi

# (c) the GPU benchmark, interleaved: training words/s and pruned eval-lm at the paper's LM shape
wants bench && part bench "$BENCH_S" bash -c "cd '$HERE' && '$PY' -m scripts.bench.gpu --out '$WORK/bench' ${BENCH_ARGS[*]@Q}"
cp "$WORK/bench/bench.json" "$RESULTS/" 2>/dev/null

# (d) convergence: the mini recipes, wider, trained until validation stops improving within the box
recipe() {  # recipe NAME DATA_SRC BOX SETTINGS...: the carried corpus copied in, then the recipe under its box
    local name=$1 data=$2 box=$3; shift 3
    mkdir -p "$WORK/$name"
    [[ -z "$data" || -d "$WORK/$name/bin" ]] || cp -r "$data" "$WORK/$name/bin"
    part "${name#mini_}" "$box" env "$@" OUT="$WORK/$name" PYTHON="$PY" bash "$HERE/recipes/$name.sh"
}
if wants lm; then
recipe mini_lm "$LM_DATA_SRC" "$LM_S" "${LM_SETTINGS[@]}"
"$PY" -m scripts.gpu.convergence "$WORK/mini_lm" ${LM_MODELS//,/ } --out "$WORK/mini_lm/convergence" \
    > "$LOGS/lm_convergence.log" 2>&1
cp "$WORK/mini_lm/results.png" "$RESULTS/lm.png" 2>/dev/null
fi
if wants mt; then
recipe mini_mt "$MT_DATA_SRC" "$MT_S" "${MT_SETTINGS[@]}"
"$PY" -m scripts.gpu.convergence "$WORK/mini_mt" layerdrop baseline --out "$WORK/mini_mt/convergence" \
    > "$LOGS/mt_convergence.log" 2>&1
cp "$WORK/mini_mt/results_both/results.png" "$RESULTS/mt.png" 2>/dev/null
fi

# everything else in one tarball (logs, sweeps, curves; not checkpoints)
tar -C "$WORK" -czf "$RESULTS/logs.tar.gz" --exclude='*.pt' --exclude='bin' --exclude='bin.tmp' --exclude='raw' \
    --exclude='data' --exclude='deb' . 2>/dev/null
{
    echo; cat "$LOGS/versions.txt"; cat "$LOGS/nvidia-smi.txt"
    echo; echo "## GPU tests"; cat "$RESULTS/tests.txt" 2>/dev/null
    for f in bench/bench.md mini_lm/convergence.md mini_lm/results.md mini_mt/convergence.md mini_mt/results_both/results.md; do
        [[ -f "$WORK/$f" ]] && { echo; echo "## $f"; cat "$WORK/$f"; }
    done
} >> "$SUMMARY"
say "done in $(( $(date +%s) - START ))s"
cat "$SUMMARY"
exit 0
