# Shared machinery of the mini recipes (recipes/mini_lm.sh, recipes/mini_mt.sh; sourced after stages.sh):
# the old environment interface, the budget check, and the training and sweeping of several models with the
# same budget, each in parallel or one after the other (PARALLEL), with per-model markers.
#
# A mini recipe calls `mini_begin NAME "$@"` instead of recipe_begin, declares its settings (UPDATES,
# SEED, WARMUP, PARALLEL, DEVICE_ARGS, TRAIN_ARGS, MODEL_NAMES among them), lists MODELS as "name:layers:rate",
# defines `model_flags NAME LAYERS RATE` (sets the array MODEL_FLAGS: the model's own fairseq-train flags)
# and optionally `model_updates NAME` (prints that model's budget; default UPDATES), calls `mini_check`,
# then `mini_select` (keeps the MODELS named in MODEL_NAMES), and ends with `mini_run STAGE...`. The stages after data run every time: each model's
# training skips when WORK_DIR/NAME/done holds a budget >= UPDATES, and continues from checkpoint_last.pt
# otherwise (exactly: --update-epoch-batch-itr True), removing that model's searches and sweeps, which are
# redone; a search or sweep skips when its output exists.

# mini_begin NAME ARGS...: recipe_begin, with SMOKE=1 as --smoke, OUT as WORK_DIR, the default work dir
# runs/NAME (runs/NAME_smoke with --smoke), and STOP_AFTER=data as --stage data.
mini_begin() {
    local name=$1 arg smoke=$SMOKE  # stages.sh took SMOKE from the environment
    shift
    for arg in "$@"; do [[ $arg == --smoke ]] && smoke=1; done
    WORK_DIR=${WORK_DIR:-${OUT:-$ROOT/runs/$name$([[ $smoke == 1 ]] && echo _smoke || true)}}
    if [[ $smoke == 1 ]]; then set -- --smoke "$@"; fi
    recipe_begin "$name" "$@"
    [[ ${STOP_AFTER:-} == data ]] && ONLY_STAGES=(data)
    return 0
}

# mini_check: refuse a budget that is not a positive number before any work.
mini_check() {
    [[ $SHOW_HELP == 1 || $UPDATES =~ ^[1-9][0-9]*$ ]] \
        || die "UPDATES must be a positive number of updates, got '$UPDATES'"
    if [[ $PARALLEL == 1 ]]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; fi
}

# mini_select: keep the MODELS (and SEARCHED, if set) named in MODEL_NAMES (comma-separated; empty: all), in
# MODELS' order; an unknown name stops the recipe before any work.
mini_select() {
    [[ -n ${MODEL_NAMES:-} ]] || return 0
    local wanted name spec kept=() all=() searched=()
    IFS=, read -ra wanted <<< "$MODEL_NAMES"
    for spec in "${MODELS[@]}"; do all+=("${spec%%:*}"); done
    for name in "${wanted[@]}"; do
        _in_list "$name" "${all[@]}" || die "MODEL_NAMES: no model '$name'; models: ${all[*]}"
    done
    for spec in "${MODELS[@]}"; do _in_list "${spec%%:*}" "${wanted[@]}" && kept+=("$spec"); done
    MODELS=("${kept[@]}")
    if [[ -n ${SEARCHED+set} ]]; then
        for name in "${SEARCHED[@]}"; do _in_list "$name" "${wanted[@]}" && searched+=("$name"); done
        SEARCHED=("${searched[@]}")
    fi
    say "models: ${wanted[*]} (MODEL_NAMES)"
}

# distill_eq_updates: 2/3 of UPDATES, the equal-compute budget of depth distillation: its full pass plus a menu
# sub-network of half the depth on average runs 1.5x the layer forwards of plain training per update.
distill_eq_updates() { echo $(((2 * UPDATES + 2) / 3)); }

# budget_of NAME: the updates NAME trains for (model_updates NAME if the recipe defines it, else UPDATES).
budget_of() { if declare -F model_updates > /dev/null; then model_updates "$1"; else echo "$UPDATES"; fi; }

# mini_run STAGE...: recipe_run, every stage after the first (data) run every time.
mini_run() {
    EVERY_RUN_STAGES=("${@:2}")
    recipe_run "$@"
}

# each FUNCTION ITEM...: FUNCTION ITEM for every item, all at once (PARALLEL=1) or in turn; fails if one did.
each() {
    local fn=$1 item pid failed=0 pids=()
    shift
    for item in "$@"; do
        if [[ $PARALLEL == 1 ]]; then "$fn" "$item" & pids+=($!); else "$fn" "$item"; fi
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return "$failed"
}

# claim DIR: 0 when this recipe process now owns the work of DIR (it made DIR.claim, holding its PID), 1 when
# another live process of a recipe holds it: two instances of a recipe on one WORK_DIR (e.g. one per core) then share
# its runs instead of redoing or deleting each other's. A claim whose process has ended is taken over.
claim() {
    local lock=$1.claim holder
    mkdir -p "$(dirname "$lock")"
    if ! mkdir "$lock" 2>/dev/null; then
        holder=$(cat "$lock/pid" 2>/dev/null || true)
        [[ -z $holder ]] && return 1  # being claimed right now
        [[ $holder != "$$" ]] && kill -0 "$holder" 2>/dev/null && return 1
        rm -rf "$lock"
        mkdir "$lock" 2>/dev/null || return 1
    fi
    echo $$ > "$lock/pid"
}
release() { rm -rf "$1.claim"; }  # release DIR: the work of DIR is finished (or failed) here

trained_to() { local n=""; [[ -f $WORK_DIR/$1/done ]] && n=$(<"$WORK_DIR/$1/done"); echo "${n:-0}"; }  # its UPDATES (0: none)

# checkpoint_updates FILE: the updates a fairseq checkpoint was saved at (0 when FILE does not exist).
checkpoint_updates() {
    [[ -f $1 ]] || { echo 0; return; }
    "$PYTHON" -c 'import sys, torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
print(state["optimizer_history"][-1]["num_updates"])' "$1"
}

# train_model NAME:LAYERS:RATE: fairseq-train with the model's flags and the budget every model shares.
train_model() {
    local name layers rate budget
    IFS=: read -r name layers rate <<< "$1"
    model_flags "$name" "$layers" "$rate"
    budget=$(budget_of "$name")
    mkdir -p "$WORK_DIR/$name"
    # searches and sweeps of an earlier checkpoint (a larger UPDATES continues training)
    rm -rf "$WORK_DIR/search_$name" "$WORK_DIR/sweep_$name" "$WORK_DIR/sweep_${name}_"*
    # a run stopped after its last checkpoint but before its done record: fairseq-train resumed at its budget would
    # still run one more update (it checks --max-update after a step)
    if (( $(checkpoint_updates "$WORK_DIR/$name/checkpoint_last.pt") >= budget )); then
        say "$name: checkpoint_last.pt is already at $budget updates (not resumed)"
        echo "$budget" > "$WORK_DIR/$name/done"
        return
    fi
    # shellcheck disable=SC2086
    "$FAIRSEQ_BIN/fairseq-train" "$WORK_DIR/bin" --user-dir "$USER_DIR" "${MODEL_FLAGS[@]}" \
        --optimizer adam --adam-betas '(0.9,0.98)' --clip-norm 1.0 \
        --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --num-workers 0 \
        --max-update "$budget" --seed "$SEED" --update-epoch-batch-itr True $DEVICE_ARGS $TRAIN_ARGS --no-epoch-checkpoints \
        --save-dir "$WORK_DIR/$name" --log-format simple --log-interval 25 >> "$WORK_DIR/$name/train.log" 2>&1 \
        || { say "training $name failed; see $WORK_DIR/$name/train.log"; return 1; }
    say "$name trained: $(grep -E '\| valid \|' "$WORK_DIR/$name/train.log" | tail -1 | sed 's/.*| valid |//')"
    echo "$budget" > "$WORK_DIR/$name/done"
}

# stage_train: every model of MODELS not yet trained to its budget (UPDATES unless model_updates says otherwise).
stage_train() {
    local spec name layers rate budget todo=()
    for spec in "${MODELS[@]}"; do
        IFS=: read -r name layers rate <<< "$spec"
        budget=$(budget_of "$name")
        if (( $(trained_to "$name") >= budget )); then
            say "$name: trained (skipping): $(trained_to "$name") updates"; continue
        fi
        say "training $name: $layers layers, LayerDrop $rate, $budget updates (log: $WORK_DIR/$name/train.log)"
        todo+=("$spec")
    done
    each train_model "${todo[@]}"
}

# sweep_once NAME LABEL DATA SWEEP_ARGS...: fairseq-layerdrop sweep of NAME's checkpoint_best.pt into
# WORK_DIR/LABEL (skipped when its sweep.csv exists).
sweep_once() {
    local name=$1 label=$2 data=$3 out=$WORK_DIR/$2
    shift 3
    if [[ -f $out/sweep.csv ]]; then say "${label#sweep_}: swept (skipping)"; return 0; fi
    say "sweeping ${label#sweep_}: $* (log: $out.log)"
    layerdrop sweep "$WORK_DIR/$name/checkpoint_best.pt" "$data" --out "$out.tmp" "$@" > "$out.log" 2>&1 \
        || { say "sweeping ${label#sweep_} failed; see $out.log"; return 1; }
    rm -rf "$out" && mv "$out.tmp" "$out"
    say "${label#sweep_} swept"
}
