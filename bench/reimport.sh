#!/usr/bin/env bash
# Re-import benchmark: `acikit import` of an image the store already has, against the first
# import of the same image into a fresh store, measured in the same run, as a ratio; and the
# content bytes each import wrote to its staging folder (`staged_bytes` of `import --json`).
#
# Usage: bench/reimport.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --runs N   timed pairs (default 5, plus one warm-up pair)
#   --dir DIR  where bench/make-image.sh wrote the image (default <repo>/target/bench; env
#              ACIKIT_BENCH_DIR); built by make-image.sh if missing. Scratch stores go to a
#              temporary folder inside DIR, never deleted before the end (deletes slow down
#              file creation on ext4 for minutes).
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#
# Each run imports debian-minbase.aci into a new empty store (first import), then imports
# it again into that store (re-import: the file's bytes are known, see store::archives), then
# imports the same image re-compressed (gzip -1, made once: other archive bytes, so the full
# pass, every file compared or hashed, nothing written); the kinds alternate, so load changes
# hit all of them. Targets:
#   median(re-import) / median(first import)                        <= 0.60
#   bytes either re-import wrote to staging (staged_bytes)          == 0
# and, for information, median(re-import of the re-compressed copy) / median(first import).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 21 "$@"

MAX_RATIO=0.60

bench_binary
bin=$ACIKIT_BIN
image=$dir/debian-minbase.aci
if [ ! -s "$image" ]; then
    "$here/make-image.sh" "$dir" >/dev/null
fi

work=$(mktemp -d "$dir/.reimport-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

json_num() { sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" | head -n 1; } # KEY < JSON
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

recompressed=$work/debian-minbase-gzip1.aci
log "re-compressing the image (gzip -1)"
gzip -dc "$image" | gzip -1 > "$recompressed"

# timed STORE OUT [FILE]: imports FILE (default the image) into STORE, its --json output to
# OUT; prints wall seconds
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" --store "$1" import --json "${3:-$image}" > "$2"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

sync -f "$work"
: > "$work/first.times"
: > "$work/again.times"
: > "$work/full.times"
staged_first=0
staged_again=0
for ((i = 0; i <= runs; i++)); do
    store=$work/store-$i
    f=$(timed "$store" "$work/first.json")
    a=$(timed "$store" "$work/again.json")
    r=$(timed "$store" "$work/full.json" "$recompressed")
    sync -f "$work" # the first import's pages are flushed by its syncfs already; untimed
    if [ "$i" -gt 0 ]; then # run 0 is the warm-up
        echo "$f" >> "$work/first.times"
        echo "$a" >> "$work/again.times"
        echo "$r" >> "$work/full.times"
    fi
    staged_first=$(json_num staged_bytes < "$work/first.json")
    s=$(json_num staged_bytes < "$work/again.json")
    [ "$s" -gt "$staged_again" ] && staged_again=$s
    t=$(json_num staged_bytes < "$work/full.json")
    [ "$t" -gt "$staged_again" ] && staged_again=$t
    for j in again full; do
        grep -q '"already_present": *true' "$work/$j.json" \
            || { log "FAIL: the re-import did not find the image present"; cat "$work/$j.json" >&2; exit 1; }
    done
    log "run $i: first import $f s, re-import $a s, re-compressed $r s (staged $staged_first, $s, $t bytes)"
done

first=$(median < "$work/first.times")
again=$(median < "$work/again.times")
full=$(median < "$work/full.times")
ratio=$(awk -v a="$again" -v b="$first" 'BEGIN { printf "%.3f", a / b }')
ratio_full=$(awk -v a="$full" -v b="$first" 'BEGIN { printf "%.3f", a / b }')
echo "acikit re-import benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"
echo "image:   $image, $runs runs each (median wall seconds)"
echo
printf '| import | median s | min s | bytes written to staging |\n| --- | ---: | ---: | ---: |\n'
printf '| first, into an empty store | %s | %s | %s |\n' "$first" "$(sort -n "$work/first.times" | head -n 1)" "$staged_first"
printf '| again, the same file, into the store that has it | %s | %s | %s |\n' "$again" "$(sort -n "$work/again.times" | head -n 1)" "$s"
printf '| again, re-compressed with gzip -1 (full pass) | %s | %s | %s |\n' "$full" "$(sort -n "$work/full.times" | head -n 1)" "$t"
echo
echo "info  re-import of the re-compressed copy/first import = $ratio_full"
fail=0
if awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { exit !(r <= m) }'; then
    echo "PASS  re-import/first import = $ratio (<= $MAX_RATIO)"
else
    echo "FAIL  re-import/first import = $ratio (<= $MAX_RATIO)"; fail=1
fi
if [ "$staged_again" = 0 ]; then
    echo "PASS  bytes the re-imports wrote to staging = 0"
else
    echo "FAIL  bytes the re-imports wrote to staging = $staged_again (0 expected)"; fail=1
fi
if [ "$fail" = 1 ] && [ "$check" = 1 ]; then
    exit 1
fi
exit 0
