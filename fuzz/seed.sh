#!/usr/bin/env bash
# Writes the seed corpora (git-ignored) for the fuzz targets:
#   fuzz/corpus/tar_reader/  small archives from GNU tar (gnu, posix with xattrs, ustar, v7,
#                            the three PAX sparse versions and old GNU sparse), bsdtar and
#                            Python's tarfile when present
#   fuzz/corpus/manifest/    a few image manifests, valid and invalid
# Usage: fuzz/seed.sh   (needs tar; bsdtar, python3, setfattr optional)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tars=$here/corpus/tar_reader
manifests=$here/corpus/manifest
mkdir -p "$tars" "$manifests"
work=$(mktemp -d "${TMPDIR:-/tmp}/acikit-seed.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A small layout with one of each kind of member.
layout=$work/layout
mkdir -p "$layout/rootfs/etc" "$layout/rootfs/bin" "$layout/rootfs/$(printf 'd%.0s' {1..90})"
printf '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/seed","labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}' > "$layout/manifest"
cd "$layout/rootfs"
printf 'root:x:0:0::/root:/bin/sh\n' > etc/passwd
: > etc/empty
head -c 1500 /dev/zero | tr '\0' 'x' > bin/tool
ln etc/passwd etc/passwd-hardlink
ln -s ../etc/passwd bin/passwd-link
printf 'long\n' > "$(printf 'd%.0s' {1..90})/$(printf 'f%.0s' {1..120})"
mkfifo bin/fifo
# A sparse file (only in the --sparse archives): 24 KiB, data at 8 KiB and at the end.
truncate -s 24576 sparse
printf 'middle' | dd of=sparse bs=1 seek=8192 conv=notrunc 2>/dev/null
printf 'end' | dd of=sparse bs=1 seek=24573 conv=notrunc 2>/dev/null
if command -v setfattr >/dev/null; then
    setfattr -n user.comment -v hello etc/passwd 2>/dev/null || true
fi
touch -d '2001-02-03 04:05:06.123456789' etc/passwd
cd "$layout"

# -b1: no padding to a 10 KiB record, so the seeds stay small.
t() { local name=$1; shift; tar -b1 "$@" -cf "$tars/$name.tar" manifest rootfs; }
t gnu --format=gnu --exclude=rootfs/sparse
t gnu-sparse --format=gnu --sparse
t posix --format=posix --xattrs --xattrs-include='*' --exclude=rootfs/sparse
t posix-sparse-0.0 --format=posix --sparse --sparse-version=0.0
t posix-sparse-0.1 --format=posix --sparse --sparse-version=0.1
t posix-sparse-1.0 --format=posix --sparse --sparse-version=1.0
tar -b1 --format=ustar -cf "$tars/ustar.tar" manifest rootfs/etc rootfs/bin
tar -b1 --format=v7 --exclude=rootfs/bin/fifo -cf "$tars/v7.tar" manifest rootfs/etc rootfs/bin
tar --format=gnu -cf "$tars/gnu-default-blocking.tar" manifest rootfs/etc
if command -v bsdtar >/dev/null; then
    bsdtar --format=pax -cf "$tars/bsdtar-pax.tar" manifest rootfs
    bsdtar --format=gnutar --exclude rootfs/sparse -cf "$tars/bsdtar-gnutar.tar" manifest rootfs/etc rootfs/bin
fi
if command -v python3 >/dev/null; then
    python3 - "$tars" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
for fmt, name in ((tarfile.PAX_FORMAT, "python-pax"), (tarfile.GNU_FORMAT, "python-gnu")):
    with tarfile.open(f"{out}/{name}.tar", "w", format=fmt) as t:
        t.add("manifest")
        t.add("rootfs/etc")
        info = tarfile.TarInfo("rootfs/" + "n" * 150)
        info.size = 3
        info.pax_headers = {"comment": "seed"} if fmt == tarfile.PAX_FORMAT else {}
        t.addfile(info, io.BytesIO(b"abc"))
        dev = tarfile.TarInfo("rootfs/dev-null")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        t.addfile(dev)
PY
fi
# Edge cases: empty archive (two zero blocks), end blocks followed by trailing bytes.
head -c 1024 /dev/zero > "$tars/empty.tar"
{ cat "$tars/v7.tar"; printf 'trailing garbage'; } > "$tars/trailing.tar"

# Manifests.
cat > "$manifests/minimal.json" <<'JSON'
{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/test"}
JSON
cat > "$manifests/labels.json" <<'JSON'
{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/test","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}
JSON
cat > "$manifests/full.json" <<'JSON'
{
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/reduce-worker",
    "labels": [
        {"name": "version", "value": "1.0.0"},
        {"name": "arch", "value": "amd64"},
        {"name": "os", "value": "linux"}
    ],
    "app": {
        "exec": ["/usr/bin/reduce-worker", "--quiet"],
        "user": "100",
        "group": "300",
        "supplementaryGIDs": [400, 500],
        "eventHandlers": [
            {"exec": ["/usr/bin/data-downloader"], "name": "pre-start"},
            {"exec": ["/usr/bin/deregister-worker", "--verbose"], "name": "post-stop"}
        ],
        "workingDirectory": "/opt/work",
        "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
        "isolators": [
            {"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
            {"name": "resource/memory", "value": {"request": "1G", "limit": "2G"}},
            {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]}}
        ],
        "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": false}],
        "ports": [{"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": true}]
    },
    "dependencies": [
        {
            "imageName": "example.com/reduce-worker-base",
            "imageID": "sha512-8d3fffddf79e9a232ffd19f9ccaa4d6b37a6a243dbe0f23137b108a043d9da13121a9b505c804956b22e93c7f93969f4a7ba8ddea45bf4aab0bebc8f814e0990",
            "labels": [{"name": "os", "value": "linux"}, {"name": "env", "value": "canary"}],
            "size": 12345
        }
    ],
    "pathWhitelist": ["/etc/ca/example.com/crt", "/usr/bin/map-reduce-worker", "/opt/libs/reduce-toolkit.so"],
    "annotations": [
        {"name": "authors", "value": "Carly Container <carly@example.com>"},
        {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
        {"name": "documentation", "value": "https://example.com/docs"},
        {"name": "homepage", "value": "https://example.com"}
    ]
}
JSON
printf '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Example.com/UPPER"}' > "$manifests/bad-name.json"
printf '{"acKind":"PodManifest","acVersion":"0.8.11","name":"example.com/test"}' > "$manifests/bad-kind.json"
printf '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/test","name":"example.com/dup"}' > "$manifests/dup-key.json"
printf '\xef\xbb\xbf{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bom"}' > "$manifests/bom.json"

echo "tar_reader: $(ls "$tars" | wc -l) seeds, largest $(wc -c "$tars"/* | sort -n | tail -2 | head -1 | awk '{print $1}') bytes"
echo "manifest:   $(ls "$manifests" | wc -l) seeds"
