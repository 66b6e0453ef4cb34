#!/usr/bin/env bash
# RoBERTa pruned, then fine-tuned on GLUE (Fan, Grave & Joulin 2019, arXiv 1909.11556: a RoBERTa pre-trained with
# LayerDrop, pruned to fewer layers and fine-tuned; Sajjad et al. 2020, arXiv 2004.03844: layer dropping for
# models pre-trained without it).
#
# Inputs, all paths (nothing is downloaded): any fairseq RoBERTa checkpoint (CHECKPOINT: fairseq's roberta.base
# model.pt, a LayerDrop one, or this plugin's roberta_layerdrop_*; ARCH names its architecture), the GLUE data
# (--data-dir DIR: DIR/TASK/{train,dev,test}.tsv as the GLUE download script writes them, MNLI's
# dev_matched/dev_mismatched/test_matched/test_mismatched) and the GPT-2 BPE files of fairseq's RoBERTa
# (ENCODER_JSON, VOCAB_BPE, DICT; by default DIR/gpt2_bpe/ or beside CHECKPOINT).
# Stages:
#   data      scripts/data/prepare_glue.py (fairseq's preprocess_GLUE_tasks.sh columns, GPT-2 BPE) and
#             fairseq-preprocess (--srcdict DICT) into WORK_DIR/bin/TASK-bin, per task of TASKS
#   prune     fairseq-layerdrop prune CHECKPOINT to each depth of DEPTHS with each strategy of STRATEGIES
#             (--encoder-prune-to; the full depth is CHECKPOINT itself) into WORK_DIR/pruned/
#   finetune  fairseq-train --task sentence_prediction from each pruned checkpoint on each task and seed, with
#             fairseq's published settings (examples/roberta/README.glue.md: lr, batch size, total updates and
#             warmup per task; 10 epochs; adam (0.9, 0.98), eps 1e-6, weight decay 0.1, dropout 0.1, polynomial
#             decay, --max-positions 512, --init-token 0 --separator-token 2; STS-B regression selected on loss;
#             --fp16 on a GPU), --restore-file PRUNED.pt --reset-optimizer --reset-dataloader --reset-meters
#             --encoder-layers DEPTH; one GPU per run (the published batch)
#   report    dev score per task, depth, strategy (mean and spread over SEEDS): results.csv, results.md,
#             results.png (scripts/scoring/finetune_results.py). Metrics: accuracy; CoLA Matthews correlation;
#             MRPC and QQP accuracy and F1; STS-B Pearson and Spearman; MNLI matched and mismatched accuracy.
#
#   CHECKPOINT=roberta.base/model.pt ENCODER_JSON=gpt2/encoder.json VOCAB_BPE=gpt2/vocab.bpe \
#       bash recipes/roberta_glue.sh --data-dir glue_data                      # every task, 12 and 6 layers
#   TASKS=RTE,MRPC DEPTHS=12,6,3 STRATEGIES=every-other,top bash recipes/roberta_glue.sh --data-dir glue_data ...
#   bash recipes/roberta_glue.sh --smoke    # a tiny RoBERTa (a few masked-LM updates) on a tiny GLUE sample, CPU
#
# Resumable: every stage skips what is finished (a task's binarized data, a pruned checkpoint, a fine-tuning run
# with its WORK_DIR/finetune/TASK/dDEPTH_STRATEGY/seedS/done); a fine-tuning run that was interrupted restarts.

source "$(dirname "$0")/lib/stages.sh"
recipe_begin roberta_glue "$@"

TINY="--encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2"
setting CHECKPOINT "" "" "the RoBERTa checkpoint to prune and fine-tune (smoke: empty = a tiny one trained here)"
setting ARCH roberta_base roberta "its architecture for fairseq-train (roberta_base, roberta_large, roberta_layerdrop_base, ...)"
setting MODEL_ARGS "" "$TINY" "more model flags of that architecture (the smoke run's tiny shape)"
setting LAYERS "" 4 "its encoder depth (empty: counted in the checkpoint)"
setting DEPTHS "" 4,2 "depths to fine-tune at, comma-separated (empty: LAYERS and LAYERS/2, as Fan et al.)"
setting STRATEGIES every-other every-other \
    "pruning strategies, comma-separated: every-other, top, bottom, symmetric, contribution:SCORES.json, search:RESULT.json"
setting TASKS MNLI,QNLI,QQP,RTE,SST-2,MRPC,CoLA,STS-B CoLA,STS-B,MNLI "GLUE tasks, comma-separated"
setting SEEDS 1 1 "fine-tuning seeds, comma-separated (a run per seed; the report gives mean and spread)"
setting ENCODER_JSON "" "" "GPT-2 BPE encoder.json (empty: DATA/gpt2_bpe/ or beside CHECKPOINT)"
setting VOCAB_BPE "" "" "GPT-2 BPE vocab.bpe (empty: likewise)"
setting DICT "" "" "fairseq's dict.txt of the checkpoint (empty: beside CHECKPOINT, else DATA/gpt2_bpe/)"
setting UPDATES_FROM published data \
    "--total-num-update and --warmup-updates: 'published' (README.glue.md's per task) or 'data' (MAX_EPOCH epochs of the train set, 6% warmup)"
setting MAX_EPOCH 10 2 "--max-epoch (published: 10)"
setting LR "" "" "--lr for every task (empty: the published per task)"
setting BATCH_SIZE "" 8 "--batch-size for every task (empty: the published per task; UPDATES_FROM=data then)"
setting FT_LAYERDROP 0 0 "--encoder-layerdrop while fine-tuning (0: the pruned network is fine-tuned as a fixed-depth model)"
setting KEEP_CHECKPOINTS 0 0 "1: keep each run's checkpoint_best.pt (large); 0: --no-save (the scores come from the logs)"
setting FT_ARGS "" "" "more fairseq-train flags for every fine-tuning run"
setting PRETRAIN_UPDATES 0 8 "smoke, without CHECKPOINT: masked-LM updates of the tiny checkpoint trained here"
setting WORKERS "$(nproc 2>/dev/null || echo 1)" 1 "processes for the BPE and fairseq-preprocess"

# fairseq's published settings (examples/roberta/README.glue.md)
declare -A CLASSES=([MNLI]=3 [QNLI]=2 [QQP]=2 [RTE]=2 [SST-2]=2 [MRPC]=2 [CoLA]=2 [STS-B]=1)
declare -A PUB_LR=([MNLI]=1e-5 [QNLI]=1e-5 [QQP]=1e-5 [RTE]=2e-5 [SST-2]=1e-5 [MRPC]=1e-5 [CoLA]=1e-5 [STS-B]=2e-5)
declare -A PUB_BSZ=([MNLI]=32 [QNLI]=32 [QQP]=32 [RTE]=16 [SST-2]=32 [MRPC]=16 [CoLA]=16 [STS-B]=16)
declare -A PUB_UPDATES=([MNLI]=123873 [QNLI]=33112 [QQP]=113272 [RTE]=2036 [SST-2]=20935 [MRPC]=2296 [CoLA]=5336 [STS-B]=3598)
declare -A PUB_WARMUP=([MNLI]=7432 [QNLI]=1986 [QQP]=28318 [RTE]=122 [SST-2]=1256 [MRPC]=137 [CoLA]=320 [STS-B]=214)

IFS=, read -ra TASK_LIST <<< "$TASKS"
IFS=, read -ra SEED_LIST <<< "$SEEDS"
IFS=, read -ra STRATEGY_LIST <<< "$STRATEGIES"
for task in "${TASK_LIST[@]}"; do
    [[ -n ${CLASSES[$task]+set} ]] || die "TASKS: no GLUE task '$task'; tasks: ${!CLASSES[*]}"
done
[[ $UPDATES_FROM == published || $UPDATES_FROM == data ]] || die "UPDATES_FROM must be 'published' or 'data', got '$UPDATES_FROM'"
[[ -z $BATCH_SIZE || $UPDATES_FROM == data || $SHOW_HELP == 1 ]] \
    || die "BATCH_SIZE=$BATCH_SIZE changes the updates of an epoch: set UPDATES_FROM=data too"
for seed in "${SEED_LIST[@]}"; do [[ $seed =~ ^[0-9]+$ ]] || die "SEEDS: '$seed' is not a number"; done
TRAIN_TINY=0
if [[ -z $CHECKPOINT && $SMOKE == 1 ]]; then
    CHECKPOINT=$WORK_DIR/pretrained/checkpoint_last.pt  # trained by the data stage of the smoke run
    TRAIN_TINY=1
elif [[ -z $CHECKPOINT ]]; then
    [[ $SHOW_HELP == 1 ]] || die "set CHECKPOINT to the RoBERTa checkpoint (model.pt) to prune and fine-tune"
else
    [[ -f $CHECKPOINT ]] || die "CHECKPOINT $CHECKPOINT: no such file"
    CHECKPOINT=$(realpath "$CHECKPOINT")
fi
first_file() {  # NAME CANDIDATE...: the first candidate that exists, or an error naming the setting
    local name=$1 path
    shift
    for path in "$@"; do [[ -f $path ]] && { echo "$path"; return 0; }; done
    echo "no $name: set it (looked in: $*)" >&2
    return 1
}
resolve_bpe() {
    local beside
    beside=$(dirname "$CHECKPOINT")
    ENCODER_JSON=${ENCODER_JSON:-$(first_file ENCODER_JSON "$DATA/gpt2_bpe/encoder.json" "$beside/encoder.json")}
    VOCAB_BPE=${VOCAB_BPE:-$(first_file VOCAB_BPE "$DATA/gpt2_bpe/vocab.bpe" "$beside/vocab.bpe")}
    DICT=${DICT:-$(first_file DICT "$beside/dict.txt" "$DATA/gpt2_bpe/dict.txt")}
}

download() {
    die "GLUE is not downloaded by this recipe: fetch it with the GLUE download script (fairseq's README.glue.md: \
download_glue_data.py --data_dir glue_data --tasks all) and pass --data-dir glue_data"
}

stage_data() {
    obtain_data glue
    resolve_bpe
    local task todo=()
    for task in "${TASK_LIST[@]}"; do
        if [[ -f $WORK_DIR/bin/$task-bin/input0/dict.txt ]]; then say "$task: binarized already"; else todo+=("$task"); fi
    done
    if (( ${#todo[@]} )); then
        run_module data.prepare_glue "$DATA" "$WORK_DIR/bin" --tasks "$(IFS=,; echo "${todo[*]}")" --encoder-json "$ENCODER_JSON" \
            --vocab-bpe "$VOCAB_BPE" --dict "$DICT" --workers "$WORKERS"
    fi
    if [[ $TRAIN_TINY == 1 && ! -f $CHECKPOINT ]]; then train_tiny; fi
}

# smoke without CHECKPOINT: a tiny RoBERTa, a few masked-LM updates on the sample's BPE text
train_tiny() {
    local dir=$WORK_DIR/pretrained
    say "training a tiny RoBERTa ($ARCH $MODEL_ARGS, $LAYERS layers, $PRETRAIN_UPDATES updates) for the smoke run"
    mkdir -p "$dir/text"
    cat "$WORK_DIR"/bin/*/train.input* > "$dir/text/train.txt"
    cat "$WORK_DIR"/bin/*/valid.input0 > "$dir/text/valid.txt"
    "$FAIRSEQ_BIN/fairseq-preprocess" --only-source --srcdict "$DICT" --trainpref "$dir/text/train.txt" \
        --validpref "$dir/text/valid.txt" --destdir "$dir/bin" --workers 1 > "$dir/preprocess.log" 2>&1
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$dir/bin" --user-dir "$USER_DIR" --task masked_lm --criterion masked_lm \
        --arch "$ARCH" $MODEL_ARGS --encoder-layers "$LAYERS" --max-positions 512 --tokens-per-sample 64 \
        --sample-break-mode complete --optimizer adam --lr 0.001 --batch-size 16 --max-update "$PRETRAIN_UPDATES" \
        --seed 1 --save-dir "$dir" --no-epoch-checkpoints --log-format simple "${HW_ARGS[@]}" > "$dir/train.log" 2>&1 \
        || { tail -20 "$dir/train.log"; die "training the tiny RoBERTa failed; see $dir/train.log"; }
}

# the encoder depth of a checkpoint: its numbered layers (fairseq's key names, old and new)
checkpoint_layers() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$1" <<'EOF'
import re, sys
import fairseq_layerdrop  # noqa: F401  (allow-lists the config classes fairseq checkpoints hold)
from fairseq import checkpoint_utils
state = checkpoint_utils.load_checkpoint_to_cpu(sys.argv[1])
layers = {int(m.group(1)) for k in state["model"] for m in [re.match(r"(?:en|de)coder\.sentence_encoder\.layers\.(\d+)\.", k)] if m}
if not layers:
    sys.exit(f"{sys.argv[1]}: no encoder.sentence_encoder.layers.N keys: not a RoBERTa checkpoint")
print(max(layers) + 1)
EOF
}

resolve_depths() {  # FULL: the checkpoint's depth (LAYERS, or counted); DEPTH_LIST: the depths to fine-tune at
    FULL=${LAYERS:-$(checkpoint_layers "$CHECKPOINT")}
    IFS=, read -ra DEPTH_LIST <<< "${DEPTHS:-$FULL,$((FULL / 2))}"
}

# the checkpoint a fine-tuning run of DEPTH with STRATEGY starts from
pruned_path() {  # DEPTH STRATEGY
    if [[ $1 == "$FULL" ]]; then echo "$CHECKPOINT"; else echo "$WORK_DIR/pruned/d$1_${2%%:*}.pt"; fi
}

stage_prune() {
    local depth strategy out
    resolve_depths
    say "$CHECKPOINT: $FULL encoder layers; depths ${DEPTH_LIST[*]}; strategies ${STRATEGY_LIST[*]}"
    mkdir -p "$WORK_DIR/pruned"
    for depth in "${DEPTH_LIST[@]}"; do
        [[ $depth =~ ^[0-9]+$ && $depth -ge 1 && $depth -le $FULL ]] || die "DEPTHS: $depth is not a depth in 1..$FULL"
        [[ $depth == "$FULL" ]] && continue
        for strategy in "${STRATEGY_LIST[@]}"; do
            out=$(pruned_path "$depth" "$strategy")
            if [[ -f $out ]]; then say "$(basename "$out"): pruned already"; continue; fi
            layerdrop prune "$CHECKPOINT" "$out" --encoder-prune-to "$depth" --prune-strategy "$strategy"
        done
    done
}

# one fine-tuning run: TASK DEPTH STRATEGY SEED
finetune_run() {
    local task=$1 depth=$2 strategy=$3 seed=$4 label dir lr bsz updates warmup n metrics subsets args=()
    label=${strategy%%:*}; [[ $depth == "$FULL" ]] && label=full
    dir=$WORK_DIR/finetune/$task/d${depth}_$label/seed$seed
    if [[ -f $dir/done ]]; then say "$task, $depth layers ($label), seed $seed: fine-tuned (skipping)"; return 0; fi
    rm -rf "$dir" && mkdir -p "$dir"
    lr=${LR:-${PUB_LR[$task]}} bsz=${BATCH_SIZE:-${PUB_BSZ[$task]}}
    if [[ $UPDATES_FROM == published ]]; then
        updates=${PUB_UPDATES[$task]} warmup=${PUB_WARMUP[$task]}
    else
        n=$(wc -l < "$WORK_DIR/bin/$task/train.input0")
        updates=$(( (n + bsz - 1) / bsz * MAX_EPOCH )) warmup=$(( ( (n + bsz - 1) / bsz * MAX_EPOCH * 6 + 99) / 100 ))
    fi
    metrics='["accuracy"]' subsets="{\"valid\": \"$task\"}"
    args=(--num-classes "${CLASSES[$task]}" --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric)
    case $task in
        CoLA) args+=(--report-mcc); metrics='["mcc", "accuracy"]' ;;
        MRPC|QQP) args+=(--report-acc-and-f1); metrics='["accuracy", "f1"]' ;;
        STS-B) args=(--num-classes 1 --regression-target --report-pearson-and-spearman --best-checkpoint-metric loss)
               metrics='["pearson", "spearman"]' ;;
        MNLI) args+=(--valid-subset valid,valid1); subsets='{"valid": "MNLI-m", "valid1": "MNLI-mm"}' ;;
    esac
    printf '{"task": "%s", "model": "%s", "depth": %s, "strategy": "%s", "seed": %s, "metrics": %s, "select": "%s", "maximize": %s, "subsets": %s}\n' \
        "$task" "$MODEL_LABEL" "$depth" "$label" "$seed" "$metrics" "$([[ $task == STS-B ]] && echo loss || echo accuracy)" \
        "$([[ $task == STS-B ]] && echo false || echo true)" "$subsets" > "$dir/run.json"
    [[ $KEEP_CHECKPOINTS == 1 ]] && args+=(--save-dir "$dir" --no-epoch-checkpoints --no-last-checkpoints) || args+=(--no-save)
    say "fine-tuning $task at $depth layers ($label), seed $seed: lr $lr, batch $bsz, $updates updates (log: $dir/train.log)"
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$WORK_DIR/bin/$task-bin" --user-dir "$USER_DIR" \
        --restore-file "$(pruned_path "$depth" "$strategy")" --reset-optimizer --reset-dataloader --reset-meters \
        --task sentence_prediction --criterion sentence_prediction --arch "$ARCH" $MODEL_ARGS --encoder-layers "$depth" \
        --encoder-layerdrop "$FT_LAYERDROP" --max-positions 512 --batch-size "$bsz" --max-tokens 4400 \
        --required-batch-size-multiple 1 --init-token 0 --separator-token 2 \
        --dropout 0.1 --attention-dropout 0.1 --weight-decay 0.1 --optimizer adam --adam-betas '(0.9, 0.98)' \
        --adam-eps 1e-06 --clip-norm 0.0 --lr-scheduler polynomial_decay --lr "$lr" --total-num-update "$updates" \
        --warmup-updates "$warmup" --max-epoch "$MAX_EPOCH" --find-unused-parameters --seed "$seed" \
        "${args[@]}" "${FT_HW_ARGS[@]}" --log-format json --log-interval 100 --no-progress-bar $FT_ARGS \
        > "$dir/train.log" 2>&1 || { tail -20 "$dir/train.log"; say "fine-tuning failed; see $dir/train.log"; return 1; }
    touch "$dir/done"
}

stage_finetune() {
    local task depth strategy seed
    resolve_depths
    for task in "${TASK_LIST[@]}"; do
        for depth in "${DEPTH_LIST[@]}"; do
            for strategy in "${STRATEGY_LIST[@]}"; do
                for seed in "${SEED_LIST[@]}"; do finetune_run "$task" "$depth" "$strategy" "$seed"; done
                if [[ $depth == "$FULL" ]]; then break; fi  # the full depth: one run per seed, whatever the strategy
            done
        done
    done
}

stage_report() {
    run_module scoring.finetune_results "$WORK_DIR/finetune" --out "$WORK_DIR" \
        --title "GLUE dev, $MODEL_LABEL pruned ($STRATEGIES) and fine-tuned$([[ $SMOKE == 1 ]] && echo ' (smoke run: tiny model and data)' || true)"
}

MODEL_LABEL=$(basename "$(dirname "$CHECKPOINT")")/$(basename "$CHECKPOINT" .pt)
[[ $TRAIN_TINY == 1 ]] && MODEL_LABEL="tiny $ARCH"
if [[ $NGPU -gt 0 ]]; then  # the published runs: one GPU, fp16 with these loss-scale settings
    FT_HW_ARGS=(--distributed-world-size 1)
    [[ ${FP16:-1} == 1 ]] && FT_HW_ARGS+=(--fp16 --fp16-init-scale 4 --threshold-loss-scale 1 --fp16-scale-window 128)
else
    FT_HW_ARGS=(--cpu)
fi
EVERY_RUN_STAGES=(data prune finetune report)
recipe_run data prune finetune report
