#!/usr/bin/env bash
# Builds a small image with tar and runs the example on it in the folder $1 (made anew).
# Run `mvn package` here first (after `mvn install` in bindings/kotlin).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:?usage: run.sh WORK_DIR}"
rm -rf "$work"
mkdir -p "$work/layout/rootfs/etc"
cat >"$work/layout/manifest" <<'JSON'
{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/kotlin-example",
 "labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}
JSON
echo "hello from the Kotlin example" >"$work/layout/rootfs/etc/hello"
tar --format=pax --sort=name --owner=0 --group=0 --numeric-owner -C "$work/layout" \
    -czf "$work/image.aci" manifest rootfs
java -cp "$here/target/classes:$(cat "$here/target/classpath.txt")" MainKt \
    "$work/image.aci" "$work/store" "$work/out.aci"
