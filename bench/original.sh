#!/usr/bin/env bash
# Original-form benchmark (issue 16, item 3): the gzip Debian image imported with its original
# form recorded (`import --original`) against a plain `import`, `export --compression original`
# against `gzip -6` of the image's tar, and the bytes kept to re-create the original against
# its compressed size.
#
# Usage: bench/original.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --runs N   timed runs of each kind (default 3, plus one warm-up)
#   --dir DIR  where bench/make-image.sh wrote the image (default <repo>/target/bench; env
#              ACIKIT_BENCH_DIR); built by make-image.sh if missing. Scratch stores go to a
#              temporary folder inside DIR, removed at the end.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#
# Each run imports debian-minbase.aci into two fresh stores, with and without recording (the
# kinds alternate, so load changes hit both), exports the original from the first as the import
# kept it, runs `gc` (which compacts it into a correction record), exports it again (re-created
# from the record), checks both are the image byte for byte, and times `gzip -6` of the image's
# tar. Bytes kept are measured after the compaction. Targets:
#   bytes kept (stats: original_kept_bytes) / compressed size          < 0.01
#   median(import with recording) / median(import without)           <= 1.5
#   median(export --compression original) / median(gzip -6 of the tar) <= 2
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 3 20 "$@"

bench_binary
bin=$ACIKIT_BIN
image=$dir/debian-minbase.aci
tar=$dir/debian-minbase.tar
if [ ! -s "$image" ]; then
    "$here/make-image.sh" "$dir" >/dev/null
fi
if [ ! -s "$tar" ]; then
    gzip -dc "$image" > "$tar"
fi

work=$(mktemp -d "$dir/.original-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

json_num() { sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" | head -n 1; } # KEY < JSON
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# seconds CMD...: runs CMD, prints its wall seconds
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

: > "$work/on.times"
: > "$work/off.times"
: > "$work/export.times"
: > "$work/kept-export.times"
: > "$work/compact.times"
: > "$work/gzip.times"
for ((i = 0; i <= runs; i++)); do
    on=$(seconds "$bin" --store "$work/on-$i" import --original "$image")
    off=$(seconds "$bin" --store "$work/off-$i" import "$image")
    out=$work/original-$i.aci
    image_ref=$(cat "$dir/debian-minbase.id" 2>/dev/null || echo debian)
    # As imported: the original is kept whole (pending) and exported as it is.
    kx=$(seconds "$bin" --store "$work/on-$i" export "$image_ref" "$out" --compression original)
    cmp -s "$out" "$image" || { log "FAIL: the exported kept original differs from the image"; exit 1; }
    rm -f "$out"
    # gc compacts it into a correction record; export then re-creates the original from it.
    cp=$(seconds "$bin" --store "$work/on-$i" gc)
    ex=$(seconds "$bin" --store "$work/on-$i" export "$image_ref" "$out" --compression original)
    cmp -s "$out" "$image" || { log "FAIL: the exported original differs from the image"; exit 1; }
    gz=$(seconds sh -c "gzip -6 -c '$tar' > '$work/gzip6.gz'")
    if [ "$i" -gt 0 ]; then # run 0 is the warm-up
        echo "$on" >> "$work/on.times"
        echo "$off" >> "$work/off.times"
        echo "$kx" >> "$work/kept-export.times"
        echo "$cp" >> "$work/compact.times"
        echo "$ex" >> "$work/export.times"
        echo "$gz" >> "$work/gzip.times"
    fi
    log "run $i: import recording $on s, without $off s, export kept $kx s, gc (compaction) $cp s, export original $ex s, gzip -6 $gz s"
    # The stores stay until the end: on this kind of disk a big delete slows the file
    # creation of the next imports for minutes.
    rm -f "$out" "$work/gzip6.gz"
done
"$bin" --store "$work/on-$runs" stats --json > "$work/stats.json"
kept=$(json_num original_kept_bytes < "$work/stats.json")
size=$(stat -c %s "$image")
on=$(median < "$work/on.times")
off=$(median < "$work/off.times")
ex=$(median < "$work/export.times")
gz=$(median < "$work/gzip.times")
kept_ratio=$(awk -v a="$kept" -v b="$size" 'BEGIN { printf "%.5f", a / b }')
import_ratio=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')
export_ratio=$(awk -v a="$ex" -v b="$gz" 'BEGIN { printf "%.3f", a / b }')
echo "acikit original-form benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"
echo "image:   $image ($size bytes), $runs runs each (median wall seconds)"
echo
printf '| step | median s | min s |\n| --- | ---: | ---: |\n'
printf '| import, original recorded | %s | %s |\n' "$on" "$(sort -n "$work/on.times" | head -n 1)"
printf '| import (no recording) | %s | %s |\n' "$off" "$(sort -n "$work/off.times" | head -n 1)"
printf '| export --compression original, as kept by the import | %s | %s |\n' "$(median < "$work/kept-export.times")" "$(sort -n "$work/kept-export.times" | head -n 1)"
printf '| gc: compaction into a correction record | %s | %s |\n' "$(median < "$work/compact.times")" "$(sort -n "$work/compact.times" | head -n 1)"
printf '| export --compression original, from the correction record | %s | %s |\n' "$ex" "$(sort -n "$work/export.times" | head -n 1)"
printf '| gzip -6 of the tar | %s | %s |\n' "$gz" "$(sort -n "$work/gzip.times" | head -n 1)"
echo
fail=0
verdict() { # NAME VALUE LIMIT OP
    if awk -v v="$2" -v l="$3" -v op="$4" 'BEGIN { exit !(op == "<" ? v < l : v <= l) }'; then
        echo "PASS  $1 = $2 ($4 $3)"
    else
        echo "FAIL  $1 = $2 ($4 $3)"; fail=1
    fi
}
verdict "bytes kept ($kept)/compressed size" "$kept_ratio" 0.01 "<"
verdict "import recording/without" "$import_ratio" 1.5 "<="
verdict "export original/gzip -6 of the tar" "$export_ratio" 2 "<="
if [ "$fail" = 1 ] && [ "$check" = 1 ]; then
    exit 1
fi
exit 0
