#!/usr/bin/env bash
# CNN/DailyMail summarization with LayerDrop (Fan, Grave & Joulin 2019, arXiv 1909.11556, Table 2):
# an encoder-decoder transformer with LayerDrop 0.2 on the full-text (non-anonymized) data with a
# SentencePiece BPE vocabulary, scored by ROUGE-1/2/L F1 with the rouge-score package. Paper:
# 40.5/17.9/37.1 for 6 + 6 layers, 41.1/18.1/37.5 for 6 + 8 (DECODER_LAYERS=8).
# Settings the paper does not state are ours and marked so in --help; decoding follows fairseq's
# BART CNN/DM settings (examples/bart/summarize.py: beam 4, lenpen 2.0, min length 55, max 140,
# no repeated trigrams).
#
# Data (--data-dir, or downloaded): either the files fairseq's examples/bart/README.summarization.md
# reads ({train,val,test}.{source,target}, one untokenized document a line) anywhere below DIR, or
# the raw stories (cnn/stories/*.story, dailymail/stories/*.story) with See et al.'s URL lists
# (all_train.txt, all_val.txt, all_test.txt), which the data stage converts.
# Pipeline: SentencePiece BPE on articles and summaries -> fairseq-preprocess (joined dictionary)
# -> fairseq-train -> fairseq-generate on test -> ROUGE -> depth sweep (ROUGE-L) -> results.md.

source "$(dirname "$0")/lib/stages.sh"
recipe_begin cnn_dm "$@"

TINY="--encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 \
--decoder-embed-dim 32 --decoder-ffn-embed-dim 64 --decoder-attention-heads 2"
setting ARCH transformer_layerdrop transformer_layerdrop "architecture: fairseq's transformer (base) with LayerDrop"
setting ENCODER_LAYERS 6 2 "--encoder-layers (paper: 6)"
setting DECODER_LAYERS 6 4 "--decoder-layers (paper: 6, or 8 for the 41.1/18.1/37.5 model)"
setting MODEL_ARGS "" "$TINY" "extra model flags (the smoke run shrinks the model here)"
setting LAYERDROP 0.2 0.2 "--encoder-layerdrop and --decoder-layerdrop (paper: 0.2)"
setting SPM_VOCAB 32000 400 "SentencePiece BPE vocabulary (ours)"
setting MAX_SOURCE_POSITIONS 400 400 "articles are truncated to this many subwords (--truncate-source; ours)"
setting PAPER_GPUS 8 1 "GPUs of the reference batch (ours)"
setting PAPER_UPDATE_FREQ 1 1 "--update-freq of the reference batch, with MAX_TOKENS per GPU (ours)"
setting MAX_TOKENS 4096 2000 "tokens per GPU per batch (ours)"
setting UPDATE_FREQ "$(update_freq "$PAPER_GPUS" "$PAPER_UPDATE_FREQ")" 1 \
    "--update-freq; default keeps PAPER_GPUS x PAPER_UPDATE_FREQ x MAX_TOKENS per update on $NGPU GPU(s)"
setting LR 0.0005 0.003 "peak learning rate, inverse_sqrt schedule (ours)"
setting WARMUP 4000 10 "--warmup-updates (ours)"
setting DROPOUT 0.1 0.1 "--dropout (ours)"
setting MAX_UPDATE 50000 0 "--max-update (0: no limit; ours)"
setting MAX_EPOCH 0 2 "--max-epoch (0: no limit)"
setting SEED 1 1 "--seed"
setting TRAIN_ARGS "" "--log-interval 5" "extra fairseq-train flags"
setting BEAM 4 2 "beam size (examples/bart/summarize.py: 4)"
setting LENPEN 2.0 2.0 "length penalty (examples/bart/summarize.py: 2.0)"
setting GEN_ARGS "--min-len 55 --max-len-b 140 --no-repeat-ngram-size 3 --batch-size 32" \
    "--min-len 5 --max-len-b 30 --no-repeat-ngram-size 3 --batch-size 32" \
    "extra fairseq-generate flags (examples/bart/summarize.py: min 55, max 140, no repeated trigrams)"
setting SWEEP_STACK both both "stack the depth sweep prunes: encoder, decoder or both"
setting SWEEP_DEPTHS 6,4,3,2 2 "depths of the sweep"
setting SWEEP_STRATEGIES every-other,top every-other "pruning strategies of the sweep"
setting WORKERS 8 1 "processes for fairseq-preprocess"

download() {
    # the stories of Hermann et al. 2015 as the Hugging Face dataset script fetched them, and the
    # split lists of See et al. 2017
    local stories=https://huggingface.co/datasets/cnn_dailymail/resolve/11343c3752184397d56efc19a8a7cceb68089318/data
    local lists=https://raw.githubusercontent.com/abisee/cnn-dailymail/master/url_lists split
    fetch "$stories/cnn_stories.tgz" "$DATA"
    fetch "$stories/dailymail_stories.tgz" "$DATA"
    mkdir -p "$DATA/url_lists"
    for split in train val test; do
        [[ -s $DATA/url_lists/all_$split.txt ]] || curl -fL -o "$DATA/url_lists/all_$split.txt" "$lists/all_$split.txt"
    done
}

stage_data() {
    obtain_data cnn_dm
    local raw=$WORK_DIR/raw split n expected
    mkdir -p "$raw"
    if find -L "$DATA" -name train.source -type f | grep -q .; then
        for split in train val test; do
            cp "$(find_one "$split.source")" "$raw/$split.source"
            cp "$(find_one "$split.target")" "$raw/$split.target"
        done
    else
        local lists
        lists=$(dirname "$(find_one all_train.txt)")
        run_module data.cnn_dm_stories "$DATA" "$lists" "$raw"
    fi
    for split in train val test; do
        same_lines "$raw/$split.source" "$raw/$split.target"
        n=$(wc -l < "$raw/$split.source")
        echo "$split: $n documents"
        case $split in train) expected=287227 ;; val) expected=13368 ;; test) expected=11490 ;; esac
        if [[ $SMOKE == 0 && $n -ne $expected ]]; then
            echo "warning: CNN/DailyMail $split has $expected documents (See et al.), these files $n"
        fi
    done
}

stage_bpe() {
    local bpe=$WORK_DIR/bpe split side
    mkdir -p "$bpe"
    run_module data.sentencepiece_bpe train --model "$bpe/spm" --vocab-size "$SPM_VOCAB" \
        "$WORK_DIR/raw/train.source" "$WORK_DIR/raw/train.target"
    for split in train val test; do
        for side in source target; do
            echo "encoding $split.$side"
            run_module data.sentencepiece_bpe encode --model "$bpe/spm.model" < "$WORK_DIR/raw/$split.$side" > "$bpe/$split.$side"
        done
    done
}

stage_preprocess() {
    rm -rf "$WORK_DIR/data-bin"
    "$FAIRSEQ_BIN/fairseq-preprocess" --source-lang source --target-lang target \
        --trainpref "$WORK_DIR/bpe/train" --validpref "$WORK_DIR/bpe/val" --testpref "$WORK_DIR/bpe/test" \
        --destdir "$WORK_DIR/data-bin" --joined-dictionary --workers "$WORKERS"
}

stage_train() {
    # a rerun resumes from checkpoint_last.pt
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$WORK_DIR/data-bin" --user-dir "$USER_DIR" --task translation_layerdrop \
        --source-lang source --target-lang target --truncate-source --max-source-positions "$MAX_SOURCE_POSITIONS" \
        --arch "$ARCH" --encoder-layers "$ENCODER_LAYERS" --decoder-layers "$DECODER_LAYERS" $MODEL_ARGS \
        --share-all-embeddings --encoder-layerdrop "$LAYERDROP" --decoder-layerdrop "$LAYERDROP" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.1 \
        --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --warmup-init-lr 1e-07 \
        --dropout "$DROPOUT" --attention-dropout 0.1 --weight-decay 0.0001 \
        --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
        --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-update "$MAX_UPDATE" --max-epoch "$MAX_EPOCH" \
        --skip-invalid-size-inputs-valid-test --seed "$SEED" --update-epoch-batch-itr True --save-dir "$WORK_DIR/checkpoints" \
        --no-epoch-checkpoints --no-progress-bar --log-format simple "${HW_ARGS[@]}" $TRAIN_ARGS
}

stage_eval() {
    local out=$WORK_DIR/eval
    mkdir -p "$out"
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-generate" "$WORK_DIR/data-bin" --user-dir "$USER_DIR" --task translation_layerdrop \
        --source-lang source --target-lang target --truncate-source --max-source-positions "$MAX_SOURCE_POSITIONS" \
        --path "$WORK_DIR/checkpoints/checkpoint_best.pt" --gen-subset test --beam "$BEAM" --lenpen "$LENPEN" \
        --bpe sentencepiece --sentencepiece-model "$WORK_DIR/bpe/spm.model" --required-batch-size-multiple 1 \
        "${EVAL_HW_ARGS[@]}" $GEN_ARGS > "$out/generate.out"
    tail -n 2 "$out/generate.out"
    run_module scoring.rouge --generate "$out/generate.out" --ref "$WORK_DIR/raw/test.target" --json > "$out/rouge.json"
    "$PYTHON" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
rouge = json.load(open(os.path.join(out, "rouge.json")))
scores = {"ROUGE-1": rouge["rouge1"], "ROUGE-2": rouge["rouge2"], "ROUGE-L": rouge["rougeL"]}
json.dump(scores, open(os.path.join(out, "scores.json"), "w"), indent=1)
print(json.dumps(scores), rouge["documents"], "documents")
EOF
}

stage_sweep() {
    layerdrop sweep "$WORK_DIR/checkpoints/checkpoint_best.pt" "$WORK_DIR/data-bin" --out "$WORK_DIR/sweep" \
        --stack "$SWEEP_STACK" --depths "$SWEEP_DEPTHS" --strategies "$SWEEP_STRATEGIES" --subset test \
        --metric ROUGE-L --fairseq-args "--source-lang source --target-lang target --truncate-source \
--max-source-positions $MAX_SOURCE_POSITIONS --beam $BEAM --lenpen $LENPEN --bpe sentencepiece \
--sentencepiece-model $WORK_DIR/bpe/spm.model ${EVAL_HW_ARGS[*]} $GEN_ARGS"
}

stage_table() {
    local paper=(ROUGE-1=40.5 ROUGE-2=17.9 ROUGE-L=37.1)
    [[ $DECODER_LAYERS == 8 ]] && paper=(ROUGE-1=41.1 ROUGE-2=18.1 ROUGE-L=37.5)
    run_module scoring.results_table \
        --title "CNN/DailyMail, $ENCODER_LAYERS + $DECODER_LAYERS layers$([[ $SMOKE == 1 ]] && echo ' (smoke run: tiny data and model)' || true)" \
        --note "Paper: Fan et al. 2019 Table 2 (LayerDrop 0.2, 6 + $([[ $DECODER_LAYERS == 8 ]] && echo 8 || echo 6) layers); this run: $ARCH $MODEL_ARGS" \
        --scores "$WORK_DIR/eval/scores.json" --paper "${paper[@]}" \
        --sweep "$WORK_DIR/sweep/sweep.csv" --sweep-metric "ROUGE-L F1 on test, $SWEEP_STACK stacks" \
        --out "$WORK_DIR/results.md"
}

recipe_run data bpe preprocess train eval sweep table
