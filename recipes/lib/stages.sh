# Shared machinery of the recipes (sourced, not run): options, settings, hardware, stages.
#
# A recipe sources this file, calls `recipe_begin NAME "$@"`, declares its settings with
# `setting NAME FULL_DEFAULT SMOKE_DEFAULT "help"` (every one overridable by an environment
# variable of the same name), defines one function `stage_NAME` per stage, and ends with
# `recipe_run STAGE...`. Each stage runs in a subshell with `set -euo pipefail`, its output
# shown and written to WORK_DIR/logs/STAGE.log; on success it leaves WORK_DIR/done/STAGE, and a
# later run skips it, unless the recipe names it in EVERY_RUN_STAGES (a stage that keeps its own
# markers inside, e.g. per model, and skips what is finished itself). A failing stage stops the recipe
# with its name and log path.

set -euo pipefail

RECIPES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "$RECIPES_DIR")
USER_DIR=$ROOT/fairseq_layerdrop

SETTINGS=()
ONLY_STAGES=()
EVERY_RUN_STAGES=()
SMOKE=${SMOKE:-0}  # SMOKE=1 in the environment is --smoke (the mini recipes' older spelling)
FORCE=0
SHOW_HELP=0
DATA_DIR=${DATA_DIR:-}
WORK_DIR=${WORK_DIR:-}

say() { echo "[$RECIPE] $*"; }
die() { echo "[$RECIPE] error: $*" >&2; exit 2; }

# recipe_begin NAME ARGS...: parse the options every recipe takes.
recipe_begin() {
    RECIPE=$1
    RECIPE_SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
    shift
    while [[ $# -gt 0 ]]; do
        case $1 in
            --stage) [[ $# -ge 2 ]] || die "--stage needs a stage name"; IFS=, read -ra _s <<< "$2"; ONLY_STAGES+=("${_s[@]}"); shift 2 ;;
            --stage=*) IFS=, read -ra _s <<< "${1#*=}"; ONLY_STAGES+=("${_s[@]}"); shift ;;
            --data-dir) [[ $# -ge 2 ]] || die "--data-dir needs a directory"; DATA_DIR=$2; shift 2 ;;
            --data-dir=*) DATA_DIR=${1#*=}; shift ;;
            --work-dir) [[ $# -ge 2 ]] || die "--work-dir needs a directory"; WORK_DIR=$2; shift 2 ;;
            --work-dir=*) WORK_DIR=${1#*=}; shift ;;
            --smoke) SMOKE=1; shift ;;
            --force) FORCE=1; shift ;;
            -h|--help) SHOW_HELP=1; shift ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
    done
    [[ $SMOKE == 0 || $SMOKE == 1 ]] || die "SMOKE must be 0 or 1 (or pass --smoke), got '$SMOKE'"
    if [[ -n $DATA_DIR ]]; then
        [[ -d $DATA_DIR ]] || die "--data-dir $DATA_DIR: no such directory"
        DATA_DIR=$(cd "$DATA_DIR" && pwd)
    fi
    if [[ -z $WORK_DIR ]]; then
        WORK_DIR=$PWD/recipe_out/$RECIPE$([[ $SMOKE == 1 ]] && echo _smoke || true)
    fi
    WORK_DIR=$(realpath -m "$WORK_DIR")
    # Where the source data is: given, generated (--smoke), or downloaded by the data stage.
    if [[ -n $DATA_DIR ]]; then DATA=$DATA_DIR
    elif [[ $SMOKE == 1 ]]; then DATA=$WORK_DIR/sample
    else DATA=$WORK_DIR/download; fi

    # The Python that has fairseq and this plugin, and the directory of fairseq's commands.
    if [[ -z ${PYTHON:-} ]]; then
        if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
    fi
    FAIRSEQ_BIN=${FAIRSEQ_BIN:-$(dirname "$(command -v "$PYTHON" || echo "$PYTHON")")}
    export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
    detect_hardware
}

# setting NAME FULL SMOKE HELP: NAME keeps the value of an environment variable NAME if one is set,
# else takes FULL (or SMOKE with --smoke).
setting() {
    local name=$1 full=$2 smoke=$3 help=$4
    SETTINGS+=("$name")
    printf -v "FULL_$name" '%s' "$full"
    printf -v "SMOKE_$name" '%s' "$smoke"
    printf -v "HELP_$name" '%s' "$help"
    if [[ -z ${!name+set} ]]; then
        if [[ $SMOKE == 1 ]]; then printf -v "$name" '%s' "$smoke"; else printf -v "$name" '%s' "$full"; fi
    fi
}

# GPUs seen by torch; fp16 and one worker per GPU with CUDA, --cpu otherwise.
detect_hardware() {
    if [[ ${FORCE_CPU:-0} == 1 ]]; then NGPU=0
    else NGPU=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0); fi
    if [[ $NGPU -gt 0 ]]; then
        HW_ARGS=(--distributed-world-size "$NGPU")
        [[ ${FP16:-1} == 1 ]] && HW_ARGS+=(--fp16)
        EVAL_HW_ARGS=()
        [[ ${FP16:-1} == 1 ]] && EVAL_HW_ARGS+=(--fp16)
    else
        HW_ARGS=(--cpu)
        EVAL_HW_ARGS=(--cpu)
    fi
}

# update_freq PAPER_GPUS PAPER_UPDATE_FREQ: the --update-freq that keeps the paper's effective batch
# (PAPER_GPUS x PAPER_UPDATE_FREQ x max-tokens) on this machine's GPU count (1 worker without a GPU).
update_freq() {
    local world=$(( NGPU > 0 ? NGPU : 1 ))
    echo $(( ($1 * $2 + world - 1) / world ))
}

print_help() {
    # The recipe's header comment, then the options and settings.
    sed -n '2,/^$/{s/^#\( \|$\)//;p}' "$RECIPE_SCRIPT"
    cat <<EOF
Usage: bash recipes/$(basename "$RECIPE_SCRIPT") [--smoke] [--data-dir DIR] [--work-dir DIR] [--stage NAME[,NAME]] [--force]

  --data-dir DIR   use data already on disk (layout above) instead of downloading
  --work-dir DIR   where every output goes (default ./recipe_out/$RECIPE, or ..._smoke)
  --stage NAME     run only this stage (repeatable, or a comma list); its earlier stages must be done
  --force          rerun the selected stages even if they are done
  --smoke          every stage on a tiny sample in the real format (made by scripts/data/recipe_samples.py
                   unless --data-dir is given) with tiny model dimensions: a few minutes on a CPU

Stages, in order (each is skipped when WORK_DIR/done/STAGE exists): ${STAGE_NAMES[*]}

Hardware: $NGPU GPU(s) seen; $( [[ $NGPU -gt 0 ]] && echo "one worker per GPU, --fp16 (FP16=0 to turn off)" || echo "--cpu" ).
FORCE_CPU=1 ignores GPUs. PYTHON=$PYTHON

Settings: environment variables of these names override them. Each with the value in force now
and the defaults (of a full run and of --smoke):
EOF
    local name full smoke help defaults
    for name in "${SETTINGS[@]}"; do
        full=FULL_$name smoke=SMOKE_$name help=HELP_$name
        defaults="default: '${!full}'"
        [[ ${!full} == "${!smoke}" ]] || defaults="full: '${!full}', smoke: '${!smoke}'"
        printf '  %-18s %s\n  %-18s = %s  (%s)\n' "$name" "${!help}" "" "'${!name}'" "$defaults"
    done
}

_in_list() { local x=$1; shift; local y; for y in "$@"; do [[ $x == "$y" ]] && return 0; done; return 1; }

# recipe_run STAGE...: run the stages in order (or only those asked for with --stage).
recipe_run() {
    STAGE_NAMES=("$@")
    if [[ $SHOW_HELP == 1 ]]; then print_help; exit 0; fi
    local stage earlier log rc started
    [[ -x $FAIRSEQ_BIN/fairseq-train ]] || die "no fairseq-train in $FAIRSEQ_BIN: set PYTHON to the python of \
the environment where fairseq-layerdrop is installed (e.g. PYTHON=.venv/bin/python), or FAIRSEQ_BIN"
    [[ -x $FAIRSEQ_BIN/fairseq-layerdrop ]] || die "no fairseq-layerdrop command in $FAIRSEQ_BIN: install this \
checkout into that environment (pip install -e .), or set PYTHON / FAIRSEQ_BIN to one where it is installed"
    for stage in "${ONLY_STAGES[@]}"; do
        _in_list "$stage" "${STAGE_NAMES[@]}" || die "--stage $stage: no such stage; stages: ${STAGE_NAMES[*]}"
    done
    mkdir -p "$WORK_DIR/logs" "$WORK_DIR/done"
    say "work dir $WORK_DIR$([[ $SMOKE == 1 ]] && echo ' (smoke)' || true); data $DATA$([[ -z $DATA_DIR && $SMOKE == 0 ]] && echo ' (to download)' || true); $NGPU GPU(s)"
    for stage in "${STAGE_NAMES[@]}"; do
        if [[ ${#ONLY_STAGES[@]} -gt 0 ]] && ! _in_list "$stage" "${ONLY_STAGES[@]}"; then continue; fi
        if [[ -f $WORK_DIR/done/$stage && $FORCE == 0 ]] && ! _in_list "$stage" "${EVERY_RUN_STAGES[@]}"; then
            say "stage $stage: done before, skipped (--force to rerun)"
            continue
        fi
        for earlier in "${STAGE_NAMES[@]}"; do
            [[ $earlier == "$stage" ]] && break
            [[ -f $WORK_DIR/done/$earlier ]] || _in_list "$earlier" "${ONLY_STAGES[@]}" \
                || die "stage $stage needs stage $earlier first (run: --stage $earlier)"
        done
        log=$WORK_DIR/logs/$stage.log
        say "stage $stage: started (log: $log)"
        started=$SECONDS
        set +e
        ( set -euo pipefail; "stage_$stage" ) 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        set -e
        if [[ $rc -ne 0 ]]; then
            echo "[$RECIPE] stage '$stage' FAILED (exit $rc); log: $log" >&2
            exit 1
        fi
        touch "$WORK_DIR/done/$stage"
        say "stage $stage: done in $(( SECONDS - started ))s"
    done
}

# obtain_data KIND: the source data into $DATA, unless --data-dir gave it: a sample in the real
# format (scripts/data/recipe_samples.py KIND) with --smoke, else the recipe's own `download` function.
obtain_data() {
    if [[ -n $DATA_DIR ]]; then echo "data from --data-dir $DATA_DIR"
    elif [[ $SMOKE == 1 ]]; then run_module data.recipe_samples "$1" "$DATA"
    else download; fi
}

# run_module MODULE ARGS...: one of the repository's scripts (scripts/MODULE, e.g. data.moses), run as
# `python -m scripts.MODULE` with the recipe's Python and this checkout on its module path.
run_module() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m "scripts.$1" "${@:2}"; }

# layerdrop SUBCOMMAND ARGS...: the installed command `fairseq-layerdrop` of the recipe's environment.
layerdrop() { "$FAIRSEQ_BIN/fairseq-layerdrop" "$@"; }

# subword_nmt ARGS...: the subword-nmt command (BPE) of the recipe's Python.
subword_nmt() {
    "$PYTHON" -c 'import sys; from subword_nmt.subword_nmt import main; sys.argv[0] = "subword-nmt"; main()' "$@"
}

# find_one NAME: the single file called NAME under the data directory (any depth), or an error.
find_one() {
    local hits
    hits=$(find -L "$DATA" -name "$1" -type f 2>/dev/null | sort)
    [[ -n $hits ]] || { echo "missing $1 under $DATA" >&2; return 1; }
    [[ $(wc -l <<< "$hits") -eq 1 ]] || { echo "more than one $1 under $DATA:"$'\n'"$hits" >&2; return 1; }
    [[ -s $hits ]] || { echo "$hits is empty" >&2; return 1; }
    echo "$hits"
}

# fetch URL DIR: download (once) and check that the archive is complete; unpack it into DIR.
fetch() {
    local url=$1 dir=$2 file
    file=$dir/$(basename "${url%%\?*}")
    mkdir -p "$dir"
    if [[ ! -f $file.ok ]]; then
        command -v wget >/dev/null && wget -c -O "$file" "$url" || curl -fL -C - -o "$file" "$url" \
            || { echo "download failed: $url (no network? then use --data-dir)" >&2; return 1; }
        case $file in
            *.tgz|*.tar.gz) tar -tzf "$file" >/dev/null || { echo "$file is incomplete or corrupt" >&2; return 1; } ;;
            *.zip) unzip -tq "$file" >/dev/null || { echo "$file is incomplete or corrupt" >&2; return 1; } ;;
        esac
        touch "$file.ok"
    fi
    case $file in
        *.tgz|*.tar.gz) tar -xzf "$file" -C "$dir" ;;
        *.zip) unzip -oq "$file" -d "$dir" ;;
    esac
}

# same_lines A B: two files of a parallel corpus have the same number of lines.
same_lines() {
    local a b
    a=$(wc -l < "$1") b=$(wc -l < "$2")
    [[ $a -eq $b ]] || { echo "$1 has $a lines but $2 has $b: not a parallel corpus" >&2; return 1; }
}
