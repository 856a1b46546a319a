#!/usr/bin/env bash
# Every test of the Kotlin binding: builds the native library (dev profile, into the
# workspace's target dir: $CARGO_TARGET_DIR or ./target), generates the Kotlin and Swift
# sources with the pinned uniffi-bindgen (Swift: generation only, so generator errors
# show), runs the JUnit 5 tests with Maven (surefire), then builds and runs the example.
# Maven's repository is under the target dir (target/maven), so nothing goes to ~/.m2.
# Needs: cargo, Java 17+, Maven 3.8+, binutils (strip), python3 (for the summary). Exits non-zero on any
# failure and ends with one line: `kotlin: N passed, N failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export CARGO_TARGET_DIR="$target"
lib="$target/debug/libacikit_uniffi.so"
generated="$root/bindings/kotlin/target/generated-sources/uniffi"
swift="$target/bindings/swift"
repo="$target/maven"
native="$target/kotlin-native"
mvn=(mvn -B -ntp -Dmaven.repo.local="$repo" -Dnative.dir="$native" -Dstyle.color=never)

step() { printf '\n== %s\n' "$*"; }

step "native library (dev profile) and uniffi-bindgen"
cargo build -p acikit-uniffi
cargo build --manifest-path "$root/bindings/uniffi-bindgen/Cargo.toml"

# The jar gets the library without its debug info (~40 MB instead of ~400 MB).
mkdir -p "$native"
strip --strip-debug -o "$native/libacikit_uniffi.so" "$lib"

step "generating Kotlin and Swift"
rm -rf "$generated" "$swift"
"$target/debug/uniffi-bindgen" generate --library "$lib" --language kotlin --no-format --out-dir "$generated"
"$target/debug/uniffi-bindgen" generate --library "$lib" --language swift --no-format --out-dir "$swift"
for f in "$generated/io/github/acikit/acikit_uniffi.kt" "$swift/Acikit.swift" "$swift/AcikitFFI.h" \
    "$swift/AcikitFFI.modulemap"; do
    [ -s "$f" ] || { echo "missing generated file: $f" >&2; exit 1; }
done

step "mvn install (compile with -Werror, JUnit 5 tests, jar with the native library)"
status=0
(cd bindings/kotlin && "${mvn[@]}" install) || status=$?

# The plain summary, from surefire's reports (whatever happened above).
counts="$(python3 - "$root/bindings/kotlin/target/surefire-reports" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
tests = failed = skipped = 0
for path in glob.glob(sys.argv[1] + "/TEST-*.xml"):
    suite = ET.parse(path).getroot()
    tests += int(suite.get("tests", 0))
    failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped += int(suite.get("skipped", 0))
print(tests - failed - skipped, failed, skipped)
PY
)"
read -r passed failed skipped <<<"$counts"

if [ "$status" -eq 0 ]; then
    step "example: examples/kotlin against the jar"
    (cd examples/kotlin && "${mvn[@]}" -q package && bash run.sh "$target/kotlin-example") || {
        echo "the example failed" >&2
        status=1
        failed=$((failed + 1))
    }
    [ "$status" -eq 0 ] && passed=$((passed + 1))
fi

if [ "$passed" -eq 0 ]; then
    echo "no test ran" >&2
    status=1
fi
echo
echo "kotlin: $passed passed, $failed failed, $skipped skipped"
exit "$status"
