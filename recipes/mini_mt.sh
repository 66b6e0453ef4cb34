#!/usr/bin/env bash
# German -> English translation in miniature (Fan et al., arXiv 1909.11556), on a CPU.
#
# Data: the example sentences of the Ding dictionary (Debian package trans-de-en, about 19.5k pairs;
# scripts/data/prepare_trans_de_en.py), plus (PHRASES=1) its headwords and phrases in the training sentences'
# vocabulary as more training pairs, joint sentencepiece BPE. Trains, with the same budget (same updates, same
# batches, same seed), pre-layer-norm transformers (NORM)
#   layerdrop : 6+6 layers, --encoder-layerdrop 0.5 --decoder-layerdrop 0.5
#   baseline  : 6+6 layers, no LayerDrop
#   scratch3  : 3+3 layers, no LayerDrop (the small model trained from scratch)
#   distill   : 6+6 layers, in-place depth distillation (--criterion
#               depth_distillation_label_smoothed_cross_entropy, docs/depth_distillation.md): each update trains
#               the full model on the labels and one sub-network of the menu 1:1..5:5 (both stacks every-other)
#               on the labels and on the full model's output
#   distill_eq: distill with 2/3 of the updates (equal compute with baseline: the full pass and a menu depth of
#               3+3 on average, 1.5x the layer-forwards per update); as training resumes exactly, it is distill's
#               state at that update
# then prunes them at test time without finetuning: both stacks to depths 1..6 with every strategy in
# STRATEGIES (distill: every-other, its menu's strategy; scratch3: its own depth), and the encoder alone and the
# decoder alone with every-other. BLEU by sacrebleu on the detokenized output of fairseq-generate. Writes one
# table (results.csv, results.md) and one plot (results.png) per pruned stack (results_STACK/), and prints them.
#
#   bash recipes/mini_mt.sh                 # hours on this project's 2-core machine (docs/results.md)
#   MODEL_NAMES=baseline,distill bash recipes/mini_mt.sh   # some of the models
#   PARALLEL=0 bash recipes/mini_mt.sh      # one model at a time (each then uses every core)
#   UPDATES=16000 DIM=128 bash recipes/mini_mt.sh  # larger: more updates, a wider model
#   DICTIONARY=de-en bash recipes/mini_mt.sh --smoke --work-dir /tmp/smoke   # the same pipeline on a few hundred pairs
#
# Work dir: runs/mini_mt by default (--work-dir, or OUT=DIR). Resumable: the data stage is done once; the
# later stages run every time and skip what is finished: a training run resumes from its checkpoint_last.pt,
# and a rerun with a larger UPDATES continues the trained models (exactly: --update-epoch-batch-itr True;
# WORK_DIR/MODEL/done records the budget) and redoes their sweeps.
# The corpus is fetched by name from the Debian archive (apt-get download + dpkg -x: nothing is installed).
# Also accepted: SMOKE=1 (--smoke), STOP_AFTER=data (--stage data), SMOKE_UPDATES (UPDATES of --smoke).

source "$(dirname "$0")/lib/stages.sh"
source "$(dirname "$0")/lib/mini.sh"
mini_begin mini_mt "$@"

setting SUBSET test test "the split the tables report; settings were fixed without looking at it"
setting SEED 1 1 "--seed"
setting UPDATES 12000 "${SMOKE_UPDATES:-6}" "the budget of every model (updates of TOKENS tokens at most; 12,000: the baseline translates, 5.4 BLEU)"
setting LR 0.005 0.002 "--lr (pre-norm; 0.005 chosen on valid over 0.002 in a pilot: docs/results.md)"
setting WARMUP 300 2 "--warmup-updates"
setting DROPOUT 0.1 0.1 "--dropout"
setting DIM 64 32 "model width"
setting FFN "" 64 "feed-forward width (empty: 4 x DIM)"
setting TOKENS 2048 2048 "--max-tokens"
setting VOCAB 4000 300 "sentencepiece vocabulary (joint)"
setting PHRASES 1 1 "1: add the dictionary's headwords and phrases to the training split (docs/results.md)"
# Pre-layer-norm: the post-norm models of fairseq's default (and of the paper's translation models) did not learn
# to translate at this budget (0.4 BLEU after 4,000 updates: docs/results.md); NORM="" trains them.
setting NORM "--encoder-normalize-before --decoder-normalize-before" "--encoder-normalize-before --decoder-normalize-before" \
    "norm flags (empty: post-norm)"
setting STRATEGIES every-other,top,bottom every-other "sweep strategies of both stacks pruned"
setting DEPTHS "" 6,3 "depths of the sweeps (empty: every depth 1..6)"
setting STACKS "both encoder decoder" both "which stacks to prune in the sweeps"
setting PARALLEL 1 1 "1: train (and sweep) the models at the same time, one thread each"
setting DEVICE_ARGS --cpu --cpu "fairseq-train's device flags (scripts/gpu_check.sh: --fp16 on a GPU)"
setting TRAIN_ARGS "" "" "more fairseq-train flags, e.g. '--patience 3 --stop-time-hours 0.02' (docs/gpu.md)"
setting DICTIONARY "" "" "the de-en file; empty: download the Debian package into WORK_DIR/deb"
setting MODEL_NAMES "" "" "the models to run, comma-separated (empty: all)"
FFN=${FFN:-$((DIM * 4))}
mini_check

LAYERS=6
# name : layers of each stack : LayerDrop rate of each stack
MODELS=("layerdrop:$LAYERS:0.5" "baseline:$LAYERS:0" "scratch3:$((LAYERS / 2)):0" "distill:$LAYERS:0"
        "distill_eq:$LAYERS:0")
declare -A LABEL=([layerdrop]="LayerDrop p=0.5" [baseline]="baseline p=0" [scratch3]="$((LAYERS / 2)) layers from scratch"
    [distill]="depth distillation" [distill_eq]="depth distillation, equal compute")
mini_select

stage_data() {
    # the Ding dictionary's sentence pairs, split, BPE, binarized with a joined dictionary
    if [[ -f $WORK_DIR/bin/dict.en.txt && $FORCE == 0 ]]; then say "data in $WORK_DIR/bin already"; return 0; fi
    local dictionary=$DICTIONARY
    if [[ -z $dictionary ]]; then
        dictionary=$WORK_DIR/deb/usr/share/trans/de-en
        if [[ ! -f $dictionary ]]; then
            say "downloading the Debian package trans-de-en"
            (cd "$WORK_DIR" && apt-get download trans-de-en >/dev/null && dpkg -x trans-de-en_*_all.deb deb)
        fi
    fi
    say "extracting sentence pairs from $dictionary"
    run_module data.prepare_trans_de_en "$dictionary" "$WORK_DIR/data" --vocab-size "$VOCAB" \
        $([[ $PHRASES == 1 ]] && echo --phrases)
    "$FAIRSEQ_BIN/fairseq-preprocess" --source-lang de --target-lang en --trainpref "$WORK_DIR/data/bpe/train" \
        --validpref "$WORK_DIR/data/bpe/valid" --testpref "$WORK_DIR/data/bpe/test" --joined-dictionary \
        --destdir "$WORK_DIR/bin.tmp" --workers 2 > "$WORK_DIR/preprocess.log" 2>&1
    rm -rf "$WORK_DIR/bin" && mv "$WORK_DIR/bin.tmp" "$WORK_DIR/bin"
    say "data ready in $WORK_DIR/bin"
}

model_flags() {  # NAME LAYERS RATE
    MODEL_FLAGS=(--task translation --source-lang de --target-lang en --arch transformer_layerdrop
        --encoder-layers "$2" --decoder-layers "$2" --encoder-layerdrop "$3" --decoder-layerdrop "$3"
        --encoder-embed-dim "$DIM" --encoder-ffn-embed-dim "$FFN" --encoder-attention-heads 4
        --decoder-embed-dim "$DIM" --decoder-ffn-embed-dim "$FFN" --decoder-attention-heads 4
        --share-all-embeddings $NORM --dropout "$DROPOUT" --criterion label_smoothed_cross_entropy --label-smoothing 0.1
        --max-tokens "$TOKENS" --lr "$LR")
    if [[ $1 == distill* ]]; then
        local depth menu=()
        for ((depth = 1; depth < $2; depth++)); do menu+=("$depth:$depth"); done
        MODEL_FLAGS+=(--criterion depth_distillation_label_smoothed_cross_entropy
            --depth-menu "$(IFS=,; echo "${menu[*]}")" --menu-strategy every-other)
    fi
    return 0
}
model_updates() {  # distill_eq: 2/3 of UPDATES (the layer-forwards of baseline's UPDATES)
    if [[ $1 == distill_eq ]]; then distill_eq_updates; else echo "$UPDATES"; fi
}

# depth sweeps: BLEU on SUBSET (greedy decoding, to keep the sweeps short), pruned at load time
GEN="--beam 1 --max-len-a 1.2 --max-len-b 10 --post-process sentencepiece --source-lang de --target-lang en"
sweep_model() {
    local name layers rate stack strategies depths
    IFS=: read -r name layers rate <<< "$1"
    for stack in $STACKS; do
        strategies=$STRATEGIES depths=$DEPTHS
        [[ $stack == both && $name != distill* ]] || strategies=every-other
        if [[ $layers != "$LAYERS" ]]; then  # the small model: its own depth, both stacks
            [[ $stack == both ]] || continue
            depths=$layers
        fi
        sweep_once "$name" "sweep_${name}_$stack" "$WORK_DIR/bin" --stack "$stack" --strategies "$strategies" \
            ${depths:+--depths "$depths"} --subset "$SUBSET" --fairseq-args "$GEN"
    done
}
stage_sweep() { each sweep_model "${MODELS[@]}"; }

# one table and one plot per pruned stack; the target checked on both stacks pruned to half
# (the models of MODELS that were swept; each check only when its models are there)
stage_report() {
    local stack spec name have inputs checks
    for stack in $STACKS; do
        have=() inputs=() checks=()
        for spec in "${MODELS[@]}"; do
            name=${spec%%:*}
            [[ -f $WORK_DIR/sweep_${name}_$stack/sweep.csv ]] || continue
            have+=("$name"); inputs+=("${LABEL[$name]}=$WORK_DIR/sweep_${name}_$stack/sweep.csv")
        done
        (( ${#have[@]} )) || die "no sweep of the $stack stack to report in $WORK_DIR (run the sweep stage first)"
        if [[ $stack == both ]]; then
            _in_list layerdrop "${have[@]}" && _in_list baseline "${have[@]}" \
                && checks+=(--check-mt "${LABEL[layerdrop]}" "${LABEL[baseline]}")
            if _in_list baseline "${have[@]}" && _in_list scratch3 "${have[@]}" && _in_list layerdrop "${have[@]}"; then
                for name in distill distill_eq; do
                    _in_list "$name" "${have[@]}" && checks+=(--check-distill "${LABEL[$name]}" "${LABEL[baseline]}"
                                                              "${LABEL[scratch3]}" "${LABEL[layerdrop]}")
                done
            fi
            (( ${#checks[@]} )) && checks+=(--full "$LAYERS" --half $((LAYERS / 2)))
        fi
        layerdrop report --out "$WORK_DIR/results_$stack" --metric BLEU \
            --title "de->en ($SUBSET), $stack pruned without finetuning" "${inputs[@]}" "${checks[@]}"
    done
}

mini_run data train sweep report
