#!/usr/bin/env bash
# Fetch benchmark: `acikit fetch URL` (signature verified, streamed into an empty store) against
# `curl -s URL | gzip -dc | sha512sum`, both from the same local HTTPS server in the same run,
# interleaved, as a ratio of medians.
#
# Usage: bench/fetch.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when the target is missed (default: report only)
#   --runs N   timed runs per command (default 5, plus one warm-up each)
#   --dir DIR  where bench/make-image.sh wrote the images (default <repo>/target/bench;
#              env ACIKIT_BENCH_DIR); a missing image is built by make-image.sh.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#
# Target, on the gzip Debian minbase image (debian-minbase.aci):
#   median(acikit fetch URL) / median(curl -s URL | gzip -dc | sha512sum)   <= 1.30
# The server is Python's http.server behind TLS (a CA and a localhost certificate made here
# with openssl), serving the image and an ascii-armored signature made here by gpg with a
# throw-away Ed25519 key, which each store trusts (`acikit trust add --root`) before its run.
# Each fetch goes into a new store; stores are deleted only at the end (see store.sh on why
# deleting thousands of files between runs slows the next imports on ext4).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 19 "$@"

MAX_RATIO=1.30

for tool in curl openssl gpg python3 gzip sha512sum; do
    command -v "$tool" >/dev/null || { log "$tool missing"; exit 1; }
done

bench_binary
bin=$ACIKIT_BIN
image=$dir/debian-minbase.aci
[ -s "$image" ] && [ -s "$dir/debian-minbase.id" ] || "$here/make-image.sh" "$dir" >/dev/null
expected_id=$(tr -d '[:space:]' < "$dir/debian-minbase.id")

work=$(mktemp -d "$dir/.fetch-bench.XXXXXX")
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    GNUPGHOME=$work/gnupg gpgconf --kill all 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A CA and a certificate for localhost.
(
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout ca.key -out ca.pem -subj /CN=acikit-bench-ca \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout leaf.key -out leaf.csr -subj /CN=localhost
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -out leaf.pem -extfile leaf.ext
) >/dev/null 2>&1

# The served folder: the image (a hardlink when possible) and its signature.
mkdir -p "$work/www" "$work/gnupg"
chmod 700 "$work/gnupg"
ln "$image" "$work/www/image.aci" 2>/dev/null || cp "$image" "$work/www/image.aci"
gpg_() { GNUPGHOME=$work/gnupg gpg --batch --yes --no-tty --pinentry-mode loopback --passphrase '' "$@"; }
gpg_ --quick-gen-key "acikit bench <bench@localhost>" ed25519 sign never 2>/dev/null
gpg_ --armor --export bench@localhost > "$work/key.asc"
gpg_ --armor --detach-sign -o "$work/www/image.aci.asc" "$work/www/image.aci" 2>/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$port" "$work/www" "$work/leaf.pem" "$work/leaf.key" <<'EOF' &
import functools, http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=root))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
server_pid=$!
url=https://localhost:$port/image.aci
for _ in $(seq 50); do
    curl -sf --cacert "$work/ca.pem" -o /dev/null "$url.asc" && break
    sleep 0.1
done

n_store=0
new_store() { # prints a new store path that trusts the bench key
    n_store=$((n_store + 1))
    local s=$work/store-$n_store
    "$bin" --store "$s" trust add --root "$work/key.asc" >/dev/null
    echo "$s"
}
now() { date +%s.%N; }
baseline() { curl -s --cacert "$work/ca.pem" "$url" | gzip -dc | sha512sum >/dev/null; }
fetch() { "$bin" --store "$1" fetch "$url" --ca-cert "$work/ca.pem" --json > "$work/fetched.json"; }

# Warm-up (page cache, TLS, the binary) and a correctness check.
baseline
s=$(new_store)
fetch "$s"
got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image_id"])' "$work/fetched.json")
[ "$got" = "$expected_id" ] || { log "fetched $got, expected $expected_id"; exit 1; }
grep -q '"fingerprint"' "$work/fetched.json" || { log "the fetch was not verified"; exit 1; }

declare -a t_base t_fetch
for i in $(seq "$runs"); do
    s=$(new_store)
    sync
    a=$(now); baseline; b=$(now)
    t_base+=("$(echo "$b - $a" | bc)")
    a=$(now); fetch "$s"; b=$(now)
    t_fetch+=("$(echo "$b - $a" | bc)")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m_base=$(median "${t_base[@]}")
m_fetch=$(median "${t_fetch[@]}")
ratio=$(awk -v f="$m_fetch" -v b="$m_base" 'BEGIN { printf "%.3f", f / b }')
size=$(stat -c %s "$image")

echo "image: $image ($size bytes), $runs runs each, interleaved; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| command | median s | min s |"
echo "| --- | ---: | ---: |"
echo "| \`curl -s URL \| gzip -dc \| sha512sum\` | $m_base | $(printf '%s\n' "${t_base[@]}" | sort -g | head -1) |"
echo "| \`acikit fetch URL\` (verified, into an empty store) | $m_fetch | $(printf '%s\n' "${t_fetch[@]}" | sort -g | head -1) |"
echo
verdict=PASS
awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { exit !(r <= m) }' || verdict=FAIL
echo "targets:"
echo "$verdict  fetch/baseline = $ratio (<= $MAX_RATIO)"
if [ "$check" = 1 ] && [ "$verdict" = FAIL ]; then
    exit 1
fi
