#!/usr/bin/env bash
# Python package benchmark: `Store.import_file` against `acikit import`, and reading the
# canonical tar through `store.open(image)` in 1 MiB reads against `acikit export
# --compression none` to a file; release builds, measured in the same run, as ratios.
#
# Usage: bench/python.sh [--runs N] [--image FILE]
#   --runs N      timed runs of each command, alternating (default 3)
#   --image FILE  the image (default: $ACIKIT_BENCH_IMAGE, else debian-minbase.aci in
#                 $ACIKIT_BENCH_DIR or <target>/bench, made by bench/make-image.sh)
#
# Both sides are timed as whole processes (the Python side includes starting the
# interpreter and importing acikit), each import into a fresh store folder that is deleted
# after its timing. Targets:
#   median(python import) / median(acikit import)                         <= 1.05
#   throughput(python open() reads) / throughput(acikit export, none)      >= 0.9
#   peak RSS of the Python reader                                          < 100 MB
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
runs=3
image=${ACIKIT_BENCH_IMAGE:-}
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        *) echo "usage: bench/python.sh [--runs N] [--image FILE]" >&2; exit 2 ;;
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

mkdir -p "$target"
work=$(mktemp -d "$target/acikit-pybench.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# One source store for the reads.
"$bin" --store "$work/source" import "$image" >/dev/null
id=$("$bin" id "$image" | tr -d '[:space:]')
tar_size=$("$py" -c "import acikit,sys; print(acikit.Store(sys.argv[1], read_only=True).get(sys.argv[2]).size)" "$work/source" "$id")

cli_import=() py_import=() cli_export=() py_read=() py_rss=()
for ((i = 0; i < runs; i++)); do
    sync
    t0=$(now); "$bin" --store "$work/cli-$i" import "$image" >/dev/null; t1=$(now)
    cli_import+=("$(echo "$t1 - $t0" | bc -l)"); rm -rf "$work/cli-$i"; sync
    t0=$(now)
    "$py" -c "import acikit,sys; acikit.Store(sys.argv[1]).import_file(sys.argv[2])" "$work/py-$i" "$image"
    t1=$(now)
    py_import+=("$(echo "$t1 - $t0" | bc -l)"); rm -rf "$work/py-$i"; sync

    t0=$(now); "$bin" --store "$work/source" export "$id" "$work/out.tar" --compression none >/dev/null; t1=$(now)
    cli_export+=("$(echo "$t1 - $t0" | bc -l)"); rm -f "$work/out.tar"; sync
    t0=$(now)
    rss=$("$py" - "$work/source" "$id" <<'PY'
import resource, sys
import acikit
store = acikit.Store(sys.argv[1], read_only=True)
total = 0
with store.open(sys.argv[2]) as reader:
    while chunk := reader.read(1 << 20):
        total += len(chunk)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
PY
)
    t1=$(now)
    py_read+=("$(echo "$t1 - $t0" | bc -l)"); py_rss+=("$rss")
done

ci=$(printf '%s\n' "${cli_import[@]}" | median)
pi=$(printf '%s\n' "${py_import[@]}" | median)
ce=$(printf '%s\n' "${cli_export[@]}" | median)
pr=$(printf '%s\n' "${py_read[@]}" | median)
rss_mb=$(printf '%s\n' "${py_rss[@]}" | sort -g | tail -1 | awk '{printf "%.1f", $1 / 1024}')
mib=$(echo "$tar_size / 1048576" | bc -l)

printf '\nimage %s (canonical tar %.0f MiB), %s runs, load %s\n' "$image" "$mib" "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| what | command | median s | ratio | target |\n| --- | --- | --- | --- | --- |\n'
printf '| import baseline | `acikit --store EMPTY import FILE` | %.3f | 1 | |\n' "$ci"
printf '| import | `Store(EMPTY).import_file(FILE)` (whole process) | %.3f | %.3f | <= 1.05 |\n' "$pi" "$(echo "$pi / $ci" | bc -l)"
printf '| read baseline | `acikit export ID OUT --compression none` | %.3f (%.0f MiB/s) | 1 | |\n' "$ce" "$(echo "$mib / $ce" | bc -l)"
printf '| read | `store.open(ID)`, 1 MiB reads (whole process) | %.3f (%.0f MiB/s) | speed %.3fx | >= 0.9x |\n' "$pr" "$(echo "$mib / $pr" | bc -l)" "$(echo "$ce / $pr" | bc -l)"
printf '| read peak RSS | the Python reader | %s MB | | < 100 MB |\n' "$rss_mb"
