#!/usr/bin/env bash
# Serve benchmark: `acikit serve` streaming the Debian minbase image uncompressed,
# regenerated from the exploded store (`/blobs/<image ID>`), against the same server
# streaming the same tar from a plain file (`--serve-file`, `/files/<name>`), over loopback
# plain HTTP, `curl -o /dev/null`, interleaved in the same run, as a ratio of throughputs
# (medians).
#
# Usage: bench/serve.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when the target is missed (default: report only)
#   --runs N   timed runs per URL (default 5, plus one warm-up each)
#   --dir DIR  where bench/make-image.sh wrote the images (default <repo>/target/bench;
#              env ACIKIT_BENCH_DIR); a missing image is built by make-image.sh.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#
# Target: throughput(store) / throughput(file) >= 0.80
#
# For information, it also times the last MiB of the image as a Range request (`bytes=-1048576`,
# regenerated from the recipe position of that offset, not from byte 0) and checks its bytes
# against the end of the tar.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 19 "$@"

bench_binary
[ -f "$dir/debian-minbase.tar" ] || "$here/make-image.sh" "$dir"
tar=$dir/debian-minbase.tar

work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$ACIKIT_BIN" --store "$work/store" import "$tar" >/dev/null
id="sha512-$(sha512sum "$tar" | cut -d' ' -f1)"
"$ACIKIT_BIN" --store "$work/store" serve --listen 127.0.0.1:0 --serve-file "$tar" --json \
    >"$work/serve.json" &
server=$!
for _ in $(seq 100); do [ -s "$work/serve.json" ] && break; sleep 0.1; done
addr=$(sed -e 's/.*"listening": *"\([^"]*\)".*/\1/' "$work/serve.json")
store_url="http://$addr/blobs/$id"
file_url="http://$addr/files/$(basename "$tar")"

# The two serve the same bytes.
[ "$(curl -sf "$store_url" | sha512sum | cut -d' ' -f1)" = "${id#sha512-}" ]
[ "$(curl -sf "$file_url" | sha512sum | cut -d' ' -f1)" = "${id#sha512-}" ]

speed() { curl -sf -o /dev/null -w '%{speed_download}\n' "$1"; }
speed "$store_url" >/dev/null
speed "$file_url" >/dev/null
: >"$work/store.txt"
: >"$work/file.txt"
for _ in $(seq "$runs"); do
    speed "$store_url" >>"$work/store.txt"
    speed "$file_url" >>"$work/file.txt"
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
store=$(median "$work/store.txt")
file=$(median "$work/file.txt")
ratio=$(awk -v s="$store" -v f="$file" 'BEGIN {printf "%.3f", s / f}')

# The last MiB as a range: the same bytes as the end of the tar, and how long it takes.
[ "$(curl -sf -r -1048576 "$store_url" | sha256sum)" = "$(tail -c 1048576 "$tar" | sha256sum)" ]
: >"$work/tail.txt"
for _ in $(seq "$runs"); do
    curl -sf -r -1048576 -o /dev/null -w '%{time_total}\n' "$store_url" >>"$work/tail.txt"
done
tail_ms=$(awk -v t="$(median "$work/tail.txt")" 'BEGIN {printf "%.1f", t * 1000}')

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v s="$store" -v f="$file" 'BEGIN {
    printf "store (regenerated): %.1f MB/s\nplain file:          %.1f MB/s\n", s / 1e6, f / 1e6 }'
echo "last MiB as a range (regenerated): $tail_ms ms"
echo "ratio: $ratio (target >= 0.80)"
if awk -v r="$ratio" 'BEGIN {exit !(r >= 0.80)}'; then
    echo PASS
else
    echo MISS
    [ "$check" = 1 ] && exit 1
fi
exit 0
