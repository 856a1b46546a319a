#!/usr/bin/env bash
# Python package benchmark: `Store.import_file` against `acikit import`, and reading the
# canonical tar through `store.open(image)` in 1 MiB reads against `acikit export
# --compression none` to a file; release builds, measured in the same run, as ratios.
#
# Usage: bench/python.sh [--runs N] [--image FILE] [--work DIR]
#   --runs N      timed runs of each command, alternating (default 3)
#   --work DIR    where the stores go (default: the cargo target dir), e.g. a tmpfs to leave
#                 the disk out of the comparison
#   --image FILE  the image (default: $ACIKIT_BENCH_IMAGE, else debian-minbase.aci in
#                 $ACIKIT_BENCH_DIR or <target>/bench, made by bench/make-image.sh)
#
# The CLI is timed as a whole process; the Python side inside its process, around the calls
# (opening the store and importing, or opening the store and reading), as the Kotlin
# benchmark leaves out the JVM's start. The whole Python process (about 0.1 s more: the
# interpreter and `import acikit`) is printed beside it. Each import goes into a fresh store
# folder; the folders are deleted at the end. Targets:
#   median(python import) / median(acikit import)                         <= 1.05
#   throughput(python open() reads) / throughput(acikit export, none)      >= 0.9
#   peak RSS of the Python reader                                          < 100 MB
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
runs=3
image=${ACIKIT_BENCH_IMAGE:-}
work_dir=
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        --work) work_dir=$2; shift 2 ;;
        *) echo "usage: bench/python.sh [--runs N] [--image FILE] [--work DIR]" >&2; exit 2 ;;
    esac
done
log() { printf '[bench] %s\n' "$*" >&2; }

if [ -z "$image" ]; then
    dir=${ACIKIT_BENCH_DIR:-$target/bench}
    image=$dir/debian-minbase.aci
    [ -s "$image" ] || "$here/make-image.sh" "$dir" >/dev/null
fi

log "release builds: acikit-cli and the Python package (pip install ./python)"
(cd "$repo" && cargo build --release -q -p acikit-cli)
bin=$target/release/acikit
venv=$target/python-bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
CARGO_TARGET_DIR=$target "$venv/bin/python" -m pip install -q --force-reinstall "$repo/python"
py=$venv/bin/python

work_dir=${work_dir:-$target}
mkdir -p "$work_dir"
work=$(mktemp -d "$work_dir/acikit-pybench.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# One source store for the reads.
"$bin" --store "$work/source" import "$image" >/dev/null
id=$("$bin" id "$image" | tr -d '[:space:]')
tar_size=$("$py" -c "import acikit,sys; print(acikit.Store(sys.argv[1], read_only=True).get(sys.argv[2]).size)" "$work/source" "$id")

# Each run alternates which side goes first. Stores are deleted only at the end: a delete
# slows file creation on this disk for minutes (online discard), and would slow whichever
# import came next.
cli_import=() py_import=() py_import_process=() cli_export=() py_read=() py_read_process=() py_rss=()
for ((i = 0; i < runs; i++)); do
    for side in cli py; do
        if [ $((i % 2)) -eq 1 ]; then side=$([ "$side" = cli ] && echo py || echo cli); fi
        if [ "$side" = cli ]; then
            sync
            t0=$(now); "$bin" --store "$work/cli-$i" import "$image" >/dev/null; t1=$(now)
            cli_import+=("$(echo "$t1 - $t0" | bc -l)")
            sync
            t0=$(now); "$bin" --store "$work/source" export "$id" "$work/out.tar" --compression none >/dev/null; t1=$(now)
            cli_export+=("$(echo "$t1 - $t0" | bc -l)"); rm -f "$work/out.tar"
        else
            sync
            # The call itself (opening the store and importing), timed inside the process.
            t0=$(now)
            seconds=$("$py" - "$work/py-$i" "$image" <<'PY'
import sys, time
import acikit
start = time.perf_counter()
acikit.Store(sys.argv[1]).import_file(sys.argv[2])
print(time.perf_counter() - start)
PY
)
            t1=$(now)
            py_import+=("$seconds"); py_import_process+=("$(echo "$t1 - $t0" | bc -l)")
            sync
            t0=$(now)
            out=$("$py" - "$work/source" "$id" <<'PY'
import resource, sys, time
import acikit
start = time.perf_counter()
store = acikit.Store(sys.argv[1], read_only=True)
total = 0
with store.open(sys.argv[2]) as reader:
    while chunk := reader.read(1 << 20):
        total += len(chunk)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
PY
)
            t1=$(now)
            py_read+=("${out% *}"); py_rss+=("${out#* }"); py_read_process+=("$(echo "$t1 - $t0" | bc -l)")
        fi
    done
    log "run $((i + 1)): import cli ${cli_import[-1]} s, python ${py_import[-1]} s (process ${py_import_process[-1]}); read cli ${cli_export[-1]} s, python ${py_read[-1]} s"
done

ci=$(printf '%s\n' "${cli_import[@]}" | median)
pi=$(printf '%s\n' "${py_import[@]}" | median)
ce=$(printf '%s\n' "${cli_export[@]}" | median)
pr=$(printf '%s\n' "${py_read[@]}" | median)
pip_=$(printf '%s\n' "${py_import_process[@]}" | median)
prp=$(printf '%s\n' "${py_read_process[@]}" | median)
rss_mb=$(printf '%s\n' "${py_rss[@]}" | sort -g | tail -1 | awk '{printf "%.1f", $1 / 1024}')
mib=$(echo "$tar_size / 1048576" | bc -l)

printf '\nimage %s (canonical tar %.0f MiB), %s runs, load %s\n' "$image" "$mib" "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| what | command | median s | ratio | target |\n| --- | --- | --- | --- | --- |\n'
printf '| import baseline | `acikit --store EMPTY import FILE` | %.3f | 1 | |\n' "$ci"
printf '| import | `Store(EMPTY).import_file(FILE)`, the call | %.3f | %.3f | <= 1.05 |\n' "$pi" "$(echo "$pi / $ci" | bc -l)"
printf '| import, whole process | the same, with starting Python and `import acikit` | %.3f | %.3f | |\n' "$pip_" "$(echo "$pip_ / $ci" | bc -l)"
printf '| read baseline | `acikit export ID OUT --compression none` | %.3f (%.0f MiB/s) | 1 | |\n' "$ce" "$(echo "$mib / $ce" | bc -l)"
printf '| read | `Store(...).open(ID)`, 1 MiB reads, the calls | %.3f (%.0f MiB/s) | speed %.3fx | >= 0.9x |\n' "$pr" "$(echo "$mib / $pr" | bc -l)" "$(echo "$ce / $pr" | bc -l)"
printf '| read, whole process | the same, with starting Python and `import acikit` | %.3f (%.0f MiB/s) | speed %.3fx | |\n' "$prp" "$(echo "$mib / $prp" | bc -l)" "$(echo "$ce / $prp" | bc -l)"
printf '| read peak RSS | the Python reader | %s MB | | < 100 MB |\n' "$rss_mb"
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? v <= t : (op == ">=") ? v >= t : v < t; print (ok ? "PASS" : "MISS") }'; }
printf '\nimport %s, read %s, memory %s\n' \
    "$(verdict "$(echo "$pi / $ci" | bc -l)" "<=" 1.05)" \
    "$(verdict "$(echo "$ce / $pr" | bc -l)" ">=" 0.9)" \
    "$(verdict "$rss_mb" "<" 100)"
