# Shared by the bench scripts (sourced, after `set -euo pipefail` and setting `here` and `repo`):
# their common arguments, logging, and the acikit binary they measure.

log() { printf '[bench] %s\n' "$*" >&2; }

# bench_args DEFAULT_RUNS HELP_LAST_LINE "$@": parses --check, --runs N, --dir DIR and --help
# (prints the script's comment, lines 2 to HELP_LAST_LINE); sets `check`, `runs` and `dir`.
bench_args() {
    runs=$1
    local help_last=$2
    shift 2
    check=0
    dir=${ACIKIT_BENCH_DIR:-$repo/target/bench}
    while [ $# -gt 0 ]; do
        case $1 in
            --check) check=1 ;;
            --runs) runs=$2; shift ;;
            --dir) dir=$2; shift ;;
            -h|--help) sed -n "2,${help_last}p" "$0"; exit 0 ;;
            *) echo "unknown argument: $1" >&2; exit 2 ;;
        esac
        shift
    done
}

# bench_binary: sets ACIKIT_BIN, building the release binary unless ACIKIT_BIN names one.
bench_binary() {
    if [ -z "${ACIKIT_BIN:-}" ]; then
        log "cargo build --release -p acikit-cli"
        (cd "$repo" && cargo build --release -q -p acikit-cli)
        ACIKIT_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/acikit
    fi
    [ -x "$ACIKIT_BIN" ] || { log "no binary at $ACIKIT_BIN"; exit 1; }
}
