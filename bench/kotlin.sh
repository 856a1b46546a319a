#!/usr/bin/env bash
# Kotlin binding benchmark: importing the Debian minbase image through the Kotlin API
# (`Store.importFile`, timed inside the program, so JVM start-up is left out) against
# `acikit import` (wall time of the process), in the same run, alternating (which one goes
# first alternates too), each into a fresh store after a `sync` (so neither side pays for the
# other's writeback); release builds of both.
#
# Usage: bench/kotlin.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when the target is missed (default: report only)
#   --runs N   timed runs of each (default 5, plus one warm-up of each)
#   --dir DIR  the folder holding debian-minbase.aci (default <repo>/target/bench; env
#              ACIKIT_BENCH_DIR); missing, it is built by bench/make-image.sh. Stores go to a
#              temporary folder inside DIR.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#
# Target: median(Kotlin importFile) / median(acikit import) <= 1.10
# Needs Java 17+ and Maven (the jar is built with a release library into the Maven
# repository under the target dir, as bindings/kotlin/test.sh does with a debug one).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 17 "$@"

MAX_RATIO=1.10

target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
# The CLI and the library in one build: built apart, their features unify differently and
# each build recompiles the shared dependencies.
if [ -z "${ACIKIT_BIN:-}" ]; then
    log "cargo build --release -p acikit-cli -p acikit-uniffi"
    (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p acikit-cli -p acikit-uniffi)
    ACIKIT_BIN=$target/release/acikit
fi
bench_binary
bin=$ACIKIT_BIN
image=$dir/debian-minbase.aci
[ -s "$image" ] || "$here/make-image.sh" "$dir" >/dev/null

target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
mvn=(mvn -B -ntp -q -Dmaven.repo.local="$target/maven" -Dstyle.color=never)
log "cargo build --release -p acikit-cli -p acikit-uniffi; the jar (release library) and the example"
# Both packages again (nothing to do after the build above): built alone, acikit-uniffi
# would unify other features and recompile the shared dependencies.
(cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p acikit-cli -p acikit-uniffi)
# The generator need not be fast: the dev build (the one test.sh uses) reads the release library.
CARGO_TARGET_DIR=$target cargo build -q --manifest-path "$repo/bindings/uniffi-bindgen/Cargo.toml"
generated=$repo/bindings/kotlin/target/generated-sources/uniffi
rm -rf "$generated"
"$target/debug/uniffi-bindgen" generate --library "$target/release/libacikit_uniffi.so" \
    --language kotlin --no-format --out-dir "$generated" >/dev/null
(cd "$repo/bindings/kotlin" && "${mvn[@]}" install -DskipTests -Dnative.dir="$target/release")
(cd "$repo/examples/kotlin" && "${mvn[@]}" package)
classpath="$repo/examples/kotlin/target/classes:$(cat "$repo/examples/kotlin/target/classpath.txt")"

scratch=$(mktemp -d "$dir/kotlin-bench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# The stores stay until the end: on this kind of disk, file creation is slower for minutes
# after a big delete, which would slow whichever import came next (see docs/PERFORMANCE.md).

# One import by the CLI: its wall time in seconds.
cli_import() {
    local store=$scratch/cli-$1 start end
    sync
    start=$(date +%s.%N)
    "$bin" --store "$store" import "$image" >/dev/null
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

# One import through the Kotlin API: the call's time, measured in the program.
kotlin_import() {
    local store=$scratch/kotlin-$1 seconds
    sync
    seconds=$(java -cp "$classpath" MainKt "$image" "$store" "$scratch/unused.aci" --time \
        | awk '$1 == "import_seconds" { print $2 }')
    [ -n "$seconds" ] || { log "the Kotlin program printed no time"; exit 1; }
    echo "$seconds"
}

median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

log "warm-up"
cli_import warm >/dev/null
kotlin_import warm >/dev/null
cli=() kotlin=()
# The order of each pair alternates: an import right after another one shares the disk with
# the previous one's writes still being flushed.
for i in $(seq 1 "$runs"); do
    if [ $((i % 2)) -eq 1 ]; then
        cli+=("$(cli_import "$i")")
        kotlin+=("$(kotlin_import "$i")")
    else
        kotlin+=("$(kotlin_import "$i")")
        cli+=("$(cli_import "$i")")
    fi
    log "run $i: acikit import ${cli[-1]} s, Kotlin importFile ${kotlin[-1]} s"
done
cli_median=$(echo "${cli[*]}" | median)
kotlin_median=$(echo "${kotlin[*]}" | median)
ratio=$(awk -v k="$kotlin_median" -v c="$cli_median" 'BEGIN { printf "%.3f", k / c }')
verdict=$(awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { print (r <= m) ? "PASS" : "MISS" }')
size=$(stat -c %s "$image")
echo "image                       $image ($size bytes)"
echo "acikit import (median)      $cli_median s   [${cli[*]}]"
echo "Kotlin importFile (median)  $kotlin_median s   [${kotlin[*]}]"
echo "ratio Kotlin / CLI          $ratio (target <= $MAX_RATIO): $verdict"
echo "load average                $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$check" -eq 0 ] || [ "$verdict" = PASS ]
