#!/usr/bin/env bash
# Builds the benchmark image: a real Debian 12 (bookworm) minbase root filesystem (~200 MB)
# packed as an appc ACI by GNU tar, in several compressions.
#
# Usage: bench/make-image.sh [OUT_DIR]
#   OUT_DIR              default: <repo>/target/bench
#   ACIKIT_BENCH_ROOTFS  an existing root filesystem to use instead of running debootstrap
#                        (copied once into OUT_DIR/layout/rootfs)
#   ACIKIT_BENCH_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#
# Writes, in OUT_DIR:
#   layout/manifest, layout/rootfs/   the image layout (kept as a cache: reused when present)
#   debian-minbase.tar                uncompressed (its SHA-512 is the image ID)
#   debian-minbase.aci                gzip -6 (the usual ACI)
#   debian-minbase.aci.xz             xz -6
#   debian-minbase.aci.zst            zstd -3
#   debian-minbase.id                 sha512-... of the tar, for checking `acikit id`
# debootstrap needs root. Archives are rebuilt only when missing (delete them to rebuild).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$repo/target/bench}
mirror=${ACIKIT_BENCH_MIRROR:-http://deb.debian.org/debian}
layout=$out/layout
mkdir -p "$layout"

log() { printf '[make-image] %s\n' "$*" >&2; }

# 1. The root filesystem.
if [ -d "$layout/rootfs" ] && [ -n "$(ls -A "$layout/rootfs" 2>/dev/null)" ]; then
    log "reusing $layout/rootfs"
elif [ -d "$out/rootfs" ] && [ -n "$(ls -A "$out/rootfs" 2>/dev/null)" ]; then
    log "reusing $out/rootfs"
    mv "$out/rootfs" "$layout/rootfs"
elif [ -n "${ACIKIT_BENCH_ROOTFS:-}" ]; then
    [ -d "$ACIKIT_BENCH_ROOTFS" ] || { log "ACIKIT_BENCH_ROOTFS=$ACIKIT_BENCH_ROOTFS is not a folder"; exit 1; }
    log "copying $ACIKIT_BENCH_ROOTFS to $layout/rootfs"
    rm -rf "$layout/rootfs.tmp"
    # -a keeps owners, modes, hardlinks, xattrs, device nodes and times.
    cp -a "$ACIKIT_BENCH_ROOTFS" "$layout/rootfs.tmp"
    mv "$layout/rootfs.tmp" "$layout/rootfs"
else
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root (or set ACIKIT_BENCH_ROOTFS)"; exit 1; }
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install -y debootstrap"; exit 1; }
    log "debootstrap --variant=minbase bookworm (a few minutes)"
    rm -rf "$layout/rootfs.tmp"
    debootstrap --variant=minbase bookworm "$layout/rootfs.tmp" "$mirror" > "$out/debootstrap.log" 2>&1 \
        || { log "debootstrap failed, see $out/debootstrap.log"; exit 1; }
    mv "$layout/rootfs.tmp" "$layout/rootfs"
fi

# 2. The manifest.
cat > "$layout/manifest" <<'EOF'
{
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/debian-minbase",
    "labels": [
        {"name": "version", "value": "12"},
        {"name": "os", "value": "linux"},
        {"name": "arch", "value": "amd64"}
    ],
    "app": {
        "exec": ["/bin/sh"],
        "user": "0",
        "group": "0"
    }
}
EOF
touch -d '2024-01-01 00:00:00 UTC' "$layout/manifest"

# 3. The archives. GNU tar, PAX format with xattrs, manifest first.
tarball=$out/debian-minbase.tar
if [ ! -s "$tarball" ]; then
    log "writing $tarball"
    tar --format=posix --xattrs -C "$layout" -cf "$tarball.tmp" manifest rootfs
    mv "$tarball.tmp" "$tarball"
fi
make_one() { # name, command
    local file=$out/$1
    if [ ! -s "$file" ]; then
        log "writing $file"
        $2 < "$tarball" > "$file.tmp"
        mv "$file.tmp" "$file"
    fi
}
make_one debian-minbase.aci "gzip -6 -c"
make_one debian-minbase.aci.xz "xz -6 -T1 -c"
make_one debian-minbase.aci.zst "zstd -3 -q -c"
printf 'sha512-%s\n' "$(sha512sum < "$tarball" | cut -c1-128)" > "$out/debian-minbase.id"

ls -l "$out"/debian-minbase.* >&2
du -sh "$layout/rootfs" >&2
echo "$out"
