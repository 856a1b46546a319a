#!/usr/bin/env bash
# Node package benchmark: `importFile` and `openRead` of the `acikit` npm package against the
# `acikit` command line doing the same, measured in the same run (release builds of both,
# fresh store folders), as ratios.
#
# Usage: bench/node.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --runs N   timed runs per command (default 5, plus one warm-up each)
#   --dir DIR  where bench/make-image.sh wrote the images (default <repo>/target/bench;
#              env ACIKIT_BENCH_DIR). A missing image is built by make-image.sh. Scratch
#              stores go to a temporary folder inside DIR.
#   ACIKIT_BIN a prebuilt acikit binary (default: built with the addon, `cargo build --release
#              -p acikit-cli -p acikit-node`)
#
# Targets, on the gzip image (debian-minbase.aci):
#   median(node importFile) / median(acikit import)                        <= 1.05 (wall)
#   median(acikit export --compression none FILE) / median(node openRead | sha512 hash)
#                                                         >= 0.85 (throughput ratio)
# Each timed run is a whole process (`node script` vs `acikit ...`), runs alternate between
# the two (and which goes first), every import goes into a store folder of its own, and the
# stores are removed only after the last import. Needs ~2 x (runs + 1) x 250 MB in DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 21 "$@"

MAX_IMPORT_RATIO=1.05
MIN_READ_RATIO=0.85

# Both release builds in one cargo call: built apart, each would unify features on its own
# and rebuild shared dependencies.
if [ -z "${ACIKIT_BIN:-}" ]; then
    log "cargo build --release -p acikit-cli -p acikit-node"
    (cd "$repo" && cargo build --release -q -p acikit-cli -p acikit-node)
    ACIKIT_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/acikit
else
    log "cargo build --release -p acikit-node"
    (cd "$repo" && cargo build --release -q -p acikit-node)
fi
[ -x "$ACIKIT_BIN" ] || { log "no binary at $ACIKIT_BIN"; exit 1; }
command -v node >/dev/null || { log "node missing"; exit 1; }

image=$dir/debian-minbase.aci
[ -s "$image" ] || "$here/make-image.sh" "$dir" >/dev/null
expected_id=$(cat "$dir/debian-minbase.id")

work=$(mktemp -d "$dir/.node-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The release addon, loaded from a copy (node/acikit.node, the dev build, is left alone).
cp "${CARGO_TARGET_DIR:-$repo/target}/release/libacikit_node.so" "$work/acikit.node"
export ACIKIT_NODE_ADDON=$work/acikit.node

cat >"$work/import.mjs" <<JS
import { Store } from '$repo/node/index.mjs';
const store = await Store.open(process.argv[2]);
const imported = await store.importFile(process.argv[3]);
await store.close();
if (imported.id !== '$expected_id') throw new Error('imported ' + imported.id);
if (imported.alreadyPresent) throw new Error('the store had the image already');
JS
cat >"$work/read.mjs" <<JS
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Store } from '$repo/node/index.mjs';
const store = await Store.open(process.argv[2]);
const hash = createHash('sha512');
await pipeline(store.openRead('$expected_id'), hash);
await store.close();
const got = 'sha512-' + hash.digest('hex');
if (got !== '$expected_id') throw new Error('read ' + got);
JS

# seconds COMMAND...: the wall time of one run
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

log "import: acikit import vs node importFile, $runs runs each (+1 warm-up), alternating"
: >"$work/import-cli"
: >"$work/import-node"
for ((i = 0; i <= runs; i++)); do
    # A store folder of its own for each import (none exists yet); the order alternates.
    if ((i % 2)); then
        js=$(seconds node "$work/import.mjs" "$work/store-node-$i" "$image")
        cli=$(seconds "$ACIKIT_BIN" --store "$work/store-cli-$i" import "$image")
    else
        cli=$(seconds "$ACIKIT_BIN" --store "$work/store-cli-$i" import "$image")
        js=$(seconds node "$work/import.mjs" "$work/store-node-$i" "$image")
    fi
    if [ "$i" -gt 0 ]; then echo "$cli" >>"$work/import-cli"; echo "$js" >>"$work/import-node"; fi
done
# Removed only now: on ext4, creating thousands of files soon after `rm -rf` of thousands is
# several times slower (see bench/store.sh), which would punish whichever import runs next.
rm -rf "$work"/store-*

log "read: acikit export --compression none vs node openRead into a hash"
store=$work/read-store
"$ACIKIT_BIN" --store "$store" import "$image" >/dev/null
: >"$work/read-cli"
: >"$work/read-node"
for ((i = 0; i <= runs; i++)); do
    cli=$(seconds "$ACIKIT_BIN" --store "$store" export "$expected_id" "$work/export.tar" --compression none)
    rm -f "$work/export.tar"
    js=$(seconds node "$work/read.mjs" "$store")
    if [ "$i" -gt 0 ]; then echo "$cli" >>"$work/read-cli"; echo "$js" >>"$work/read-node"; fi
done

tar_bytes=$(stat -c %s "$dir/debian-minbase.tar")
import_cli=$(median <"$work/import-cli")
import_node=$(median <"$work/import-node")
read_cli=$(median <"$work/read-cli")
read_node=$(median <"$work/read-node")
import_ratio=$(awk -v a="$import_node" -v b="$import_cli" 'BEGIN { printf "%.3f", a / b }')
read_ratio=$(awk -v a="$read_cli" -v b="$read_node" 'BEGIN { printf "%.3f", a / b }')
mbps() { awk -v s="$1" -v b="$tar_bytes" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }

echo "image: $image ($(stat -c %s "$image") bytes, canonical tar $tar_bytes bytes), $runs runs, medians"
printf '  %-44s %8.3f s\n' "acikit import" "$import_cli"
printf '  %-44s %8.3f s   ratio %s (target <= %s)\n' "node importFile" "$import_node" "$import_ratio" "$MAX_IMPORT_RATIO"
printf '  %-44s %8.3f s   %s MiB/s\n' "acikit export --compression none (file)" "$read_cli" "$(mbps "$read_cli")"
printf '  %-44s %8.3f s   %s MiB/s, throughput ratio %s (target >= %s)\n' "node openRead -> pipeline -> sha512" "$read_node" "$(mbps "$read_node")" "$read_ratio" "$MIN_READ_RATIO"

missed=0
awk -v r="$import_ratio" -v m="$MAX_IMPORT_RATIO" 'BEGIN { exit !(r <= m) }' || { log "MISSED: import ratio $import_ratio > $MAX_IMPORT_RATIO"; missed=1; }
awk -v r="$read_ratio" -v m="$MIN_READ_RATIO" 'BEGIN { exit !(r >= m) }' || { log "MISSED: read ratio $read_ratio < $MIN_READ_RATIO"; missed=1; }
if [ "$check" = 1 ] && [ "$missed" = 1 ]; then exit 1; fi
exit 0
