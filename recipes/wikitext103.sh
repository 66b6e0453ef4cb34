#!/usr/bin/env bash
# WikiText-103 language model with LayerDrop (Fan, Grave & Joulin 2019, arXiv 1909.11556, Table 3):
# the adaptive-input transformer of Baevski & Auli (16 layers of width 1024) with LayerDrop 0.2
# (paper: 18.3 test perplexity), pruned to 8 layers by keeping every other layer without
# finetuning (paper: 20.78 valid perplexity). Training is fairseq's
# examples/language_model/README.adaptive_inputs.md, which fairseq's examples/layerdrop/README.md
# names as the paper's setting; evaluation as in examples/quant_noise/README.md (Fan et al.'s
# WikiText-103 models): --sample-break-mode complete --context-window 2560.
#
# Data (--data-dir, or downloaded): wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens anywhere
# below DIR (wikitext-103-v1.zip unpacked). Word level: no BPE (the tokenize stage only checks).
# Pipeline: fairseq-preprocess --only-source -> fairseq-train -> fairseq-eval-lm on valid and test
# -> depth sweep (every-other and top) -> results.md.

source "$(dirname "$0")/lib/stages.sh"
recipe_begin wikitext103 "$@"

TINY="--decoder-embed-dim 32 --decoder-input-dim 32 --decoder-output-dim 32 --decoder-ffn-embed-dim 64 \
--decoder-attention-heads 2 --decoder-layers 4 --adaptive-input-cutoff 40,80 --adaptive-softmax-cutoff 40,80"
setting ARCH transformer_lm_layerdrop_wiki103 transformer_lm_layerdrop_wiki103 \
    "architecture: adaptive inputs, 16 layers of width 1024 (Baevski & Auli)"
setting MODEL_ARGS "" "$TINY" "extra model flags (the smoke run shrinks the model here)"
setting LAYERDROP 0.2 0.2 "--decoder-layerdrop (paper: 0.2)"
setting PAPER_GPUS 8 1 "GPUs of the setting (Baevski & Auli: 8, with --update-freq 3)"
setting PAPER_UPDATE_FREQ 3 1 "--update-freq of the setting, with MAX_TOKENS per GPU"
setting MAX_TOKENS 3072 512 "tokens per GPU per batch (README.adaptive_inputs: 3072)"
setting TOKENS_PER_SAMPLE 3072 64 "--tokens-per-sample (README.adaptive_inputs: 3072)"
setting UPDATE_FREQ "$(update_freq "$PAPER_GPUS" "$PAPER_UPDATE_FREQ")" 1 \
    "--update-freq; default keeps PAPER_GPUS x PAPER_UPDATE_FREQ x MAX_TOKENS per update on $NGPU GPU(s)"
setting MAX_UPDATE 286000 0 "--max-update (README.adaptive_inputs: 286000)"
setting MAX_EPOCH 0 2 "--max-epoch (0: no limit)"
setting LR_ARGS "--lr 1.0 --t-mult 2 --lr-period-updates 270000 --lr-shrink 0.75 --warmup-updates 16000" \
    "--lr 1.0 --t-mult 2 --lr-period-updates 40 --lr-shrink 0.75 --warmup-updates 5" \
    "cosine schedule (README.adaptive_inputs)"
setting SEED 1 1 "--seed"
setting TRAIN_ARGS "" "--log-interval 5" "extra fairseq-train flags"
setting EVAL_ARGS "--sample-break-mode complete --max-tokens 3072 --context-window 2560 --softmax-batch 1024" \
    "--sample-break-mode complete --max-tokens 512 --tokens-per-sample 64 --context-window 32" \
    "fairseq-eval-lm flags (examples/quant_noise/README.md)"
setting SWEEP_DEPTHS 16,12,8,6,4 2 "depths of the sweep (paper: 8, every other)"
setting SWEEP_STRATEGIES every-other,top every-other "pruning strategies of the sweep"
setting WORKERS 8 1 "processes for fairseq-preprocess"

download() {
    # fairseq's examples/language_model/prepare-wikitext-103.sh names the second address (now gone);
    # the first is where the data set's authors host it today
    fetch https://wikitext.smerity.com/wikitext-103-v1.zip "$DATA" \
        || fetch https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip "$DATA"
}

stage_data() {
    obtain_data wikitext103
    local raw=$WORK_DIR/raw split file words lines expected
    mkdir -p "$raw"
    for split in train valid test; do
        file=$(find_one "wiki.$split.tokens")
        ln -sf "$file" "$raw/wiki.$split.tokens"
        words=$(wc -w < "$file") lines=$(wc -l < "$file")
        # tokens as fairseq counts them: the words and one end-of-line symbol a line (Merity et al. 2016)
        echo "$split: $((words + lines)) tokens ($file)"
        case $split in train) expected=103227021 ;; valid) expected=217646 ;; test) expected=245569 ;; esac
        if [[ $SMOKE == 0 && $((words + lines)) -ne $expected ]]; then
            echo "warning: WikiText-103 $split has $expected tokens, this file $((words + lines)): another version?"
        fi
    done
}

stage_tokenize() {
    # WikiText-103 comes tokenized, with <unk> for rare words; the paper's LM reads words, no BPE.
    grep -q '<unk>' "$WORK_DIR/raw/wiki.train.tokens" \
        || { echo "wiki.train.tokens has no <unk>: not the tokenized WikiText-103 (raw version?)" >&2; exit 1; }
    echo "word-level data, tokenized already: nothing to do"
}

stage_preprocess() {
    rm -rf "$WORK_DIR/data-bin"
    "$FAIRSEQ_BIN/fairseq-preprocess" --only-source --trainpref "$WORK_DIR/raw/wiki.train.tokens" \
        --validpref "$WORK_DIR/raw/wiki.valid.tokens" --testpref "$WORK_DIR/raw/wiki.test.tokens" \
        --destdir "$WORK_DIR/data-bin" --workers "$WORKERS"
}

stage_train() {
    # examples/language_model/README.adaptive_inputs.md; a rerun resumes from checkpoint_last.pt
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$WORK_DIR/data-bin" --user-dir "$USER_DIR" --task language_modeling \
        --arch "$ARCH" $MODEL_ARGS --decoder-layerdrop "$LAYERDROP" \
        --max-update "$MAX_UPDATE" --max-epoch "$MAX_EPOCH" --lr-scheduler cosine $LR_ARGS \
        --warmup-init-lr 1e-07 --stop-min-lr 1e-09 --optimizer nag --min-lr 0.0001 --clip-norm 0.1 \
        --criterion adaptive_loss --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" \
        --tokens-per-sample "$TOKENS_PER_SAMPLE" --seed "$SEED" --update-epoch-batch-itr True --sample-break-mode none \
        --skip-invalid-size-inputs-valid-test --ddp-backend legacy_ddp \
        --save-dir "$WORK_DIR/checkpoints" --no-epoch-checkpoints --no-progress-bar --log-format simple \
        "${HW_ARGS[@]}" $TRAIN_ARGS
}

stage_eval() {
    local out=$WORK_DIR/eval subset
    mkdir -p "$out"
    for subset in valid test; do
        # shellcheck disable=SC2086
        "$FAIRSEQ_BIN/fairseq-eval-lm" "$WORK_DIR/data-bin" --user-dir "$USER_DIR" \
            --task language_modeling_layerdrop --path "$WORK_DIR/checkpoints/checkpoint_best.pt" \
            --gen-subset "$subset" "${EVAL_HW_ARGS[@]}" $EVAL_ARGS 2>&1 | tee "$out/$subset.log"
        run_module scoring.perplexity "$out/$subset.log" --json > "$out/$subset.json"
    done
    "$PYTHON" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
read = lambda subset: json.load(open(os.path.join(out, subset + ".json")))["perplexity"]
scores = {"valid perplexity, full depth": read("valid"), "test perplexity, full depth": read("test")}
json.dump(scores, open(os.path.join(out, "scores.json"), "w"), indent=1)
print(json.dumps(scores))
EOF
}

stage_sweep() {
    layerdrop sweep "$WORK_DIR/checkpoints/checkpoint_best.pt" "$WORK_DIR/data-bin" --out "$WORK_DIR/sweep" \
        --depths "$SWEEP_DEPTHS" --strategies "$SWEEP_STRATEGIES" --subset valid \
        --fairseq-args "${EVAL_HW_ARGS[*]} $EVAL_ARGS"
}

stage_table() {
    run_module scoring.results_table \
        --title "WikiText-103, $ARCH$([[ $SMOKE == 1 ]] && echo ' (smoke run: tiny data and model)' || true)" \
        --note "Paper: Fan et al. 2019 Table 3 (16 layers, LayerDrop 0.2) and the every-other pruning to 8 layers; this run: $ARCH $MODEL_ARGS" \
        --scores "$WORK_DIR/eval/scores.json" --paper "test perplexity, full depth=18.3" \
        --sweep "$WORK_DIR/sweep/sweep.csv" --sweep-metric "valid perplexity" --paper-sweep "8:every-other=20.78" \
        --out "$WORK_DIR/results.md"
}

recipe_run data tokenize preprocess train eval sweep table
