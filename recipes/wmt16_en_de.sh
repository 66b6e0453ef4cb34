#!/usr/bin/env bash
# WMT16 English-German with LayerDrop (Fan, Grave & Joulin 2019, arXiv 1909.11556, Table 1):
# Transformer big, LayerDrop 0.2 in both stacks, 12 encoder + 6 decoder layers (paper: 30.2
# compound-split BLEU on newstest2014; 29.6 for 6 + 6, ARCH=transformer_layerdrop_wmt_en_de_big).
# Training follows Ott et al. 2018 as fairseq's examples/scaling_nmt/README.md gives it (which
# fairseq's examples/layerdrop/README.md names as the paper's setting); evaluation follows
# examples/layerdrop/README.md (beam 8, length penalty 0.4, compound-split BLEU) plus sacreBLEU.
#
# Data (--data-dir, or downloaded from statmt.org): the WMT16 archives unpacked anywhere below DIR:
#   europarl-v7.de-en.{en,de}, commoncrawl.de-en.{en,de}, news-commentary-v11.de-en.{en,de} (train),
#   newstest2013.{en,de} (valid), newstest2014-deen-src.en.sgm, newstest2014-deen-ref.de.sgm (test).
# Pipeline: Moses normalization + tokenization (sacremoses) -> joint BPE (subword-nmt, 32k merges)
# -> fairseq-preprocess (joined dictionary) -> fairseq-train -> average the last 10 epoch
# checkpoints -> fairseq-generate on newstest2014 -> encoder depth sweep -> results.md.

source "$(dirname "$0")/lib/stages.sh"
recipe_begin wmt16_en_de "$@"

TINY="--encoder-embed-dim 32 --encoder-ffn-embed-dim 64 --encoder-attention-heads 2 --encoder-layers 4 \
--decoder-embed-dim 32 --decoder-ffn-embed-dim 64 --decoder-attention-heads 2 --decoder-layers 2"
setting ARCH transformer_layerdrop_wmt_en_de_12_6 transformer_layerdrop_wmt_en_de_12_6 \
    "architecture (paper: ..._12_6 for 30.2 BLEU, ..._big for the 6 + 6 model's 29.6)"
setting MODEL_ARGS "" "$TINY" "extra model flags (the smoke run shrinks the model here)"
setting LAYERDROP 0.2 0.2 "--encoder-layerdrop and --decoder-layerdrop (paper: 0.2)"
setting BPE_TOKENS 32000 300 "BPE merges learned on the joint training text (Ott et al.: 32k)"
setting PAPER_GPUS 8 1 "GPUs of the paper's setting (scaling_nmt README: 8 GPUs, --update-freq 16)"
setting PAPER_UPDATE_FREQ 16 1 "--update-freq of the paper's setting, with MAX_TOKENS per GPU"
setting MAX_TOKENS 3584 1500 "tokens per GPU per batch (scaling_nmt README: 3584)"
setting UPDATE_FREQ "$(update_freq "$PAPER_GPUS" "$PAPER_UPDATE_FREQ")" 1 \
    "--update-freq; default keeps PAPER_GPUS x PAPER_UPDATE_FREQ x MAX_TOKENS per update on $NGPU GPU(s)"
setting LR 0.001 0.003 "peak learning rate (scaling_nmt README: 0.001 with big batches)"
setting WARMUP 4000 10 "--warmup-updates of the inverse_sqrt schedule"
setting DROPOUT 0.3 0.1 "--dropout (Ott et al.: 0.3)"
setting MAX_UPDATE 30000 0 "--max-update (0: no limit); ours: the paper does not state it"
setting MAX_EPOCH 0 2 "--max-epoch (0: no limit)"
setting SEED 1 1 "--seed"
setting TRAIN_ARGS "" "--log-interval 5" "extra fairseq-train flags"
setting AVERAGE_N 10 2 "epoch checkpoints to average (scaling_nmt README: the last 10)"
setting AVERAGE_SCRIPT "" "" \
    "fairseq's scripts/average_checkpoints.py to average with (same flags); empty: fairseq-layerdrop average"
setting BEAM 8 2 "beam size (examples/layerdrop/README.md: 8)"
setting LENPEN 0.4 0.4 "length penalty (examples/layerdrop/README.md: 0.4)"
setting GEN_ARGS "--batch-size 64" "--batch-size 64 --max-len-a 1.2 --max-len-b 10" "extra fairseq-generate flags"
setting SWEEP_STACK encoder encoder "stack the depth sweep prunes: encoder, decoder or both"
setting SWEEP_DEPTHS 12,10,8,6,4,2 2 "depths of the sweep"
setting SWEEP_STRATEGIES every-other,top every-other "pruning strategies of the sweep"
setting WORKERS 8 1 "processes for tokenization and fairseq-preprocess"

download() {
    # the archives of fairseq's examples/translation/prepare-wmt14en2de.sh, WMT16 news commentary v11
    local url
    for url in http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz \
               http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz \
               http://data.statmt.org/wmt16/translation-task/training-parallel-nc-v11.tgz \
               http://data.statmt.org/wmt16/translation-task/dev.tgz \
               http://statmt.org/wmt14/test-full.tgz; do
        fetch "$url" "$DATA"
    done
}

stage_data() {
    obtain_data wmt16
    local raw=$WORK_DIR/raw corpus en de n
    mkdir -p "$raw"
    : > "$raw/train.en.tmp"; : > "$raw/train.de.tmp"
    for corpus in europarl-v7.de-en commoncrawl.de-en news-commentary-v11.de-en; do
        en=$(find_one "$corpus.en"); de=$(find_one "$corpus.de")
        same_lines "$en" "$de"
        echo "$corpus: $(wc -l < "$en") sentence pairs ($en)"
        cat "$en" >> "$raw/train.en.tmp"; cat "$de" >> "$raw/train.de.tmp"
    done
    mv "$raw/train.en.tmp" "$raw/train.en"; mv "$raw/train.de.tmp" "$raw/train.de"
    en=$(find_one newstest2013.en); de=$(find_one newstest2013.de)
    same_lines "$en" "$de"
    cp "$en" "$raw/valid.en"; cp "$de" "$raw/valid.de"
    # the test set's segments, as prepare-wmt14en2de.sh extracts them from the SGML (it also turns
    # ’ into '); the reference verbatim too, for sacreBLEU
    for side in src.en ref.de; do
        grep '<seg id' "$(find_one "newstest2014-deen-$side.sgm")" \
            | sed -e 's/<seg id="[0-9]*">\s*//g' -e 's/\s*<\/seg>\s*//g' > "$raw/newstest2014.$side"
        sed -e "s/\’/\'/g" "$raw/newstest2014.$side" > "$raw/test.${side#*.}"
    done
    same_lines "$raw/test.en" "$raw/test.de"
    n=$(wc -l < "$raw/test.de")
    if [[ $SMOKE == 0 && $n -ne 3003 ]]; then
        echo "newstest2014 (full) has 3003 segments, these files have $n: wrong test set?" >&2; exit 1
    fi
    echo "train $(wc -l < "$raw/train.en"), valid $(wc -l < "$raw/valid.en"), test $n sentence pairs in $raw"
}

stage_bpe() {
    local tok=$WORK_DIR/tok bpe=$WORK_DIR/bpe split l
    mkdir -p "$tok" "$bpe"
    for split in train valid test; do
        for l in en de; do
            echo "tokenizing $split.$l"
            run_module data.moses tokenize --lang "$l" --workers "$WORKERS" < "$WORK_DIR/raw/$split.$l" > "$tok/$split.$l"
        done
    done
    echo "learning $BPE_TOKENS joint BPE merges"
    cat "$tok/train.en" "$tok/train.de" > "$tok/train.joint"
    subword_nmt learn-bpe -s "$BPE_TOKENS" --input "$tok/train.joint" --output "$bpe/code" --num-workers "$WORKERS"
    for split in train valid test; do
        for l in en de; do
            subword_nmt apply-bpe -c "$bpe/code" --input "$tok/$split.$l" --output "$bpe/$split.all.$l" \
                --num-workers "$WORKERS"
        done
    done
    # Moses clean-corpus-n.perl -ratio 1.5 ... 1 250 (prepare-wmt14en2de.sh) on train and valid: drop a
    # pair with an empty side, a side over 250 tokens, or a length ratio over 1.5
    for split in train valid; do
        paste -d '\t' "$bpe/$split.all.en" "$bpe/$split.all.de" | awk -F '\t' -v OFS='\t' '{
            a = split($1, x, " "); b = split($2, y, " ");
            if (a >= 1 && b >= 1 && a <= 250 && b <= 250 && a / b <= 1.5 && b / a <= 1.5) print }' > "$bpe/$split.pairs"
        cut -f 1 "$bpe/$split.pairs" > "$bpe/$split.en"; cut -f 2 "$bpe/$split.pairs" > "$bpe/$split.de"
        echo "$split: kept $(wc -l < "$bpe/$split.en") of $(wc -l < "$bpe/$split.all.en") pairs after cleaning"
    done
    cp "$bpe/test.all.en" "$bpe/test.en"; cp "$bpe/test.all.de" "$bpe/test.de"
}

stage_preprocess() {
    rm -rf "$WORK_DIR/data-bin"
    "$FAIRSEQ_BIN/fairseq-preprocess" --source-lang en --target-lang de \
        --trainpref "$WORK_DIR/bpe/train" --validpref "$WORK_DIR/bpe/valid" --testpref "$WORK_DIR/bpe/test" \
        --destdir "$WORK_DIR/data-bin" --joined-dictionary --workers "$WORKERS"
}

stage_train() {
    # Ott et al. 2018 via examples/scaling_nmt/README.md; a rerun resumes from checkpoint_last.pt
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$WORK_DIR/data-bin" --user-dir "$USER_DIR" --arch "$ARCH" $MODEL_ARGS \
        --task translation_layerdrop --share-all-embeddings \
        --encoder-layerdrop "$LAYERDROP" --decoder-layerdrop "$LAYERDROP" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 \
        --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --warmup-init-lr 1e-07 \
        --dropout "$DROPOUT" --weight-decay 0.0 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
        --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --max-update "$MAX_UPDATE" --max-epoch "$MAX_EPOCH" \
        --seed "$SEED" --update-epoch-batch-itr True --save-dir "$WORK_DIR/checkpoints" --keep-last-epochs "$AVERAGE_N" \
        --no-progress-bar --log-format simple "${HW_ARGS[@]}" $TRAIN_ARGS
}

stage_average() {
    local average=(layerdrop average)
    [[ -z $AVERAGE_SCRIPT ]] || average=("$PYTHON" "$AVERAGE_SCRIPT")
    "${average[@]}" --inputs "$WORK_DIR/checkpoints" --num-epoch-checkpoints "$AVERAGE_N" \
        --output "$WORK_DIR/checkpoints/checkpoint_avg.pt"
}

stage_eval() {
    local out=$WORK_DIR/eval
    mkdir -p "$out"
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-generate" "$WORK_DIR/data-bin" --user-dir "$USER_DIR" --task translation_layerdrop \
        --path "$WORK_DIR/checkpoints/checkpoint_avg.pt" --gen-subset test --beam "$BEAM" --lenpen "$LENPEN" \
        --remove-bpe --required-batch-size-multiple 1 "${EVAL_HW_ARGS[@]}" $GEN_ARGS > "$out/generate.out"
    tail -n 2 "$out/generate.out"
    run_module scoring.bleu "$out/generate.out" --json > "$out/compound_split.json"
    run_module scoring.bleu "$out/generate.out" --no-compound-split --json > "$out/tokenized.json"
    run_module scoring.bleu "$out/generate.out" --ref "$WORK_DIR/raw/newstest2014.ref.de" --lang de --json \
        > "$out/sacrebleu.json"
    "$PYTHON" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
read = lambda name: json.load(open(os.path.join(out, name)))["bleu"]
scores = {"compound-split BLEU (newstest2014)": read("compound_split.json"),
          "tokenized BLEU": read("tokenized.json"), "sacreBLEU (detokenized)": read("sacrebleu.json")}
json.dump(scores, open(os.path.join(out, "scores.json"), "w"), indent=1)
print(json.dumps(scores))
EOF
}

stage_sweep() {
    layerdrop sweep "$WORK_DIR/checkpoints/checkpoint_avg.pt" "$WORK_DIR/data-bin" --out "$WORK_DIR/sweep" \
        --stack "$SWEEP_STACK" --depths "$SWEEP_DEPTHS" --strategies "$SWEEP_STRATEGIES" --subset test \
        --fairseq-args "--beam $BEAM --lenpen $LENPEN --remove-bpe ${EVAL_HW_ARGS[*]} $GEN_ARGS"
}

stage_table() {
    local model=12-6 paper=30.2
    [[ $ARCH == transformer_layerdrop_wmt_en_de_big ]] && model=6-6 paper=29.6
    run_module scoring.results_table --title "WMT16 En-De, $ARCH$([[ $SMOKE == 1 ]] && echo ' (smoke run: tiny data and model)' || true)" \
        --note "Paper: Fan et al. 2019 Table 1, Transformer $model with LayerDrop 0.2; this run: $ARCH $MODEL_ARGS" \
        --scores "$WORK_DIR/eval/scores.json" --paper "compound-split BLEU (newstest2014)=$paper" \
        --sweep "$WORK_DIR/sweep/sweep.csv" --sweep-metric "BLEU of $SWEEP_STACK depths on newstest2014, tokenized" \
        --out "$WORK_DIR/results.md"
}

recipe_run data bpe preprocess train average eval sweep table
