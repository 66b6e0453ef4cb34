#!/usr/bin/env bash
# German -> English translation in miniature (Fan et al., arXiv 1909.11556), on a CPU.
#
# Data: the example sentences of the Ding dictionary (Debian package trans-de-en, about 19.5k pairs;
# scripts/data/prepare_trans_de_en.py), joint sentencepiece BPE. Trains, with the same budget (same updates,
# same batches, same seed), a 6+6-layer transformer
#   layerdrop : --encoder-layerdrop 0.5 --decoder-layerdrop 0.5
#   baseline  : no LayerDrop
# then prunes both at test time without finetuning: both stacks to depths 1..6 with every strategy in
# STRATEGIES, and the encoder alone and the decoder alone with every-other. BLEU by sacrebleu on the
# detokenized output of fairseq-generate. Writes one table (results.csv, results.md) and one plot
# (results.png) per pruned stack, and prints them.
#
#   bash recipes/mini_mt.sh                 # about 40 minutes on this project's 2-core machine (docs/results.md)
#   PARALLEL=0 bash recipes/mini_mt.sh      # one model at a time (each then uses every core)
#   UPDATES=8000 DIM=128 bash recipes/mini_mt.sh   # larger: more updates, a wider model
#   SMOKE=1 OUT=/tmp/smoke bash recipes/mini_mt.sh   # the same pipeline on a few hundred pairs
#
# Resumable: rerunning skips finished stages; a training run resumes from its checkpoint_last.pt, and a
# rerun with a larger UPDATES continues the trained models (exactly: --update-epoch-batch-itr True) and redoes their sweeps.
# The corpus is fetched by name from the Debian archive (apt-get download + dpkg -x: nothing is installed).
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
PLUGIN="$HERE/fairseq_layerdrop"
OUT="${OUT:-$HERE/runs/mini_mt}"
SUBSET="${SUBSET:-test}"     # the split the tables report; settings were fixed without looking at it
SEED="${SEED:-1}"
UPDATES="${UPDATES:-4000}"   # the budget of both models (in updates of TOKENS tokens at most; 157 updates = 1 epoch)
LR="${LR:-0.001}"; WARMUP="${WARMUP:-300}"  # chosen on valid loss after 640 updates against 0.002 / 50 (docs/results.md)
DIM="${DIM:-64}"; FFN="${FFN:-$((DIM * 4))}"; TOKENS="${TOKENS:-2048}"
LAYERS=6
# Post-layer-norm (fairseq's default and the paper's translation models); NORM="--encoder-normalize-before
# --decoder-normalize-before" trains pre-norm models, which learned faster in a 640-update pilot (docs/results.md).
NORM="${NORM-}"
STRATEGIES="${STRATEGIES:-every-other,top,bottom}"
DEPTHS="${DEPTHS:-}"         # depths of the sweeps (default: every depth 1..6)
STACKS="${STACKS:-both encoder decoder}"  # which stacks to prune in the sweeps
# name : LayerDrop rate of each stack
MODELS=("layerdrop:0.5" "baseline:0")
PARALLEL="${PARALLEL:-1}"    # 1: train (and sweep) the models at the same time, one thread each
VOCAB=6000
DICTIONARY="${DICTIONARY:-}"  # the de-en file; empty: download the Debian package into $OUT/deb
if [[ "${SMOKE:-0}" == 1 ]]; then
    UPDATES="${SMOKE_UPDATES:-6}"; WARMUP=2; DIM=32; FFN=64; TOKENS=2048; VOCAB=300; DEPTHS=6,3; STRATEGIES=every-other; STACKS=both
fi

[[ "$PARALLEL" == 1 ]] && export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

[[ "$UPDATES" =~ ^[1-9][0-9]*$ ]] || { echo "UPDATES must be a positive number of updates, got '$UPDATES'" >&2; exit 2; }

say() { echo "[mini_mt $(date -u +%H:%M:%S)] $*"; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PYTHONWARNINGS=ignore

# 1. data: the Ding dictionary's sentence pairs, split, BPE, binarized with a joined dictionary
if [[ ! -f "$OUT/bin/dict.en.txt" ]]; then
    if [[ -z "$DICTIONARY" ]]; then
        DICTIONARY="$OUT/deb/usr/share/trans/de-en"
        if [[ ! -f "$DICTIONARY" ]]; then
            say "downloading the Debian package trans-de-en"
            (cd "$OUT" && apt-get download trans-de-en >/dev/null && dpkg -x trans-de-en_*_all.deb deb)
        fi
    fi
    say "extracting sentence pairs from $DICTIONARY"
    PYTHONPATH="$HERE" "$PYTHON" -m scripts.data.prepare_trans_de_en "$DICTIONARY" "$OUT/data" --vocab-size "$VOCAB"
    "$BIN/fairseq-preprocess" --source-lang de --target-lang en --trainpref "$OUT/data/bpe/train" \
        --validpref "$OUT/data/bpe/valid" --testpref "$OUT/data/bpe/test" --joined-dictionary \
        --destdir "$OUT/bin.tmp" --workers 2 > "$OUT/preprocess.log" 2>&1
    rm -rf "$OUT/bin" && mv "$OUT/bin.tmp" "$OUT/bin"
fi

# 2. training: the same budget for both models
train() {
    local name=$1 rate=$2
    mkdir -p "$OUT/$name"
    rm -rf "$OUT/sweep_${name}_"*  # sweeps of an earlier checkpoint (a larger UPDATES continues training)
    "$BIN/fairseq-train" "$OUT/bin" --user-dir "$PLUGIN" --task translation --source-lang de --target-lang en \
        --arch transformer_layerdrop --encoder-layers "$LAYERS" --decoder-layers "$LAYERS" \
        --encoder-layerdrop "$rate" --decoder-layerdrop "$rate" \
        --encoder-embed-dim "$DIM" --encoder-ffn-embed-dim "$FFN" --encoder-attention-heads 4 \
        --decoder-embed-dim "$DIM" --decoder-ffn-embed-dim "$FFN" --decoder-attention-heads 4 \
        --share-all-embeddings $NORM --dropout 0.2 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
        --max-tokens "$TOKENS" --optimizer adam --adam-betas '(0.9,0.98)' --clip-norm 1.0 --lr "$LR" \
        --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --num-workers 0 \
        --max-update "$UPDATES" --seed "$SEED" --update-epoch-batch-itr True --cpu --no-epoch-checkpoints \
        --save-dir "$OUT/$name" --log-format simple --log-interval 25 >> "$OUT/$name/train.log" 2>&1 \
        || { say "training $name failed; see $OUT/$name/train.log"; return 1; }
    say "$name trained: $(grep -E '\| valid \|' "$OUT/$name/train.log" | tail -1 | sed 's/.*| valid |//')"
    echo "$UPDATES" > "$OUT/$name/done"
}
trained_to() { local n=""; [[ -f "$OUT/$1/done" ]] && n="$(<"$OUT/$1/done")"; echo "${n:-0}"; }  # its UPDATES (0: none)
pids=()
for spec in "${MODELS[@]}"; do
    IFS=: read -r name rate <<< "$spec"
    trained="$(trained_to "$name")"
    if (( trained >= UPDATES )); then say "$name: trained (skipping): $trained updates"; continue; fi
    say "training $name: $LAYERS+$LAYERS layers, LayerDrop $rate, $UPDATES updates (log: $OUT/$name/train.log)"
    if [[ "$PARALLEL" == 1 ]]; then train "$name" "$rate" & pids+=($!); else train "$name" "$rate"; fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 3. depth sweeps: BLEU on $SUBSET (greedy decoding, to keep the sweeps short), pruned at load time
GEN="--beam 1 --max-len-a 1.2 --max-len-b 10 --post-process sentencepiece --source-lang de --target-lang en"
sweep_model() {
    local name=$1 stack strategies sweep
    for stack in $STACKS; do
        sweep="$OUT/sweep_${name}_$stack"
        if [[ -f "$sweep/sweep.csv" ]]; then say "$name, $stack: swept (skipping)"; continue; fi
        strategies="$STRATEGIES"; [[ "$stack" == both ]] || strategies=every-other
        say "sweeping $name: $stack, $strategies (log: $sweep.log)"
        "$BIN/fairseq-layerdrop" sweep "$OUT/$name/checkpoint_best.pt" "$OUT/bin" --out "$sweep.tmp" \
            --stack "$stack" --strategies "$strategies" ${DEPTHS:+--depths "$DEPTHS"} --subset "$SUBSET" \
            --fairseq-args "$GEN" > "$sweep.log" 2>&1 || { say "sweeping $name failed; see $sweep.log"; return 1; }
        rm -rf "$sweep" && mv "$sweep.tmp" "$sweep"
    done
}
pids=()
for spec in "${MODELS[@]}"; do
    IFS=: read -r name rate <<< "$spec"
    if [[ "$PARALLEL" == 1 ]]; then sweep_model "$name" & pids+=($!); else sweep_model "$name"; fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

# 4. one table and one plot per pruned stack; the target checked on both stacks pruned to half
for stack in $STACKS; do
    check=(); [[ "$stack" == both ]] && check=(--check-mt "LayerDrop p=0.5" "baseline p=0" --full "$LAYERS" --half $((LAYERS / 2)))
    "$BIN/fairseq-layerdrop" report --out "$OUT/results_$stack" --metric BLEU \
        --title "de->en ($SUBSET), $stack pruned without finetuning" \
        "LayerDrop p=0.5=$OUT/sweep_layerdrop_$stack/sweep.csv" "baseline p=0=$OUT/sweep_baseline_$stack/sweep.csv" \
        "${check[@]}"
done
