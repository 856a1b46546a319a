#!/usr/bin/env bash
# Store growth when the same tree comes from several tar writers (issue 16): the Debian
# rootfs of bench/make-image.sh packed by GNU tar (as made), GNU tar without --sparse,
# bsdtar (pax) and Python's tarfile (pax), then the rootfs plus a 64 MiB file with 10 bytes
# of data packed by GNU tar with and without --sparse, all imported into one store. Every
# extra image must grow the store by less than 1 MB beyond its recipe (same files, other
# headers: no new object), and the 64 MiB file must take a few KB on disk either way.
#
# Usage: bench/writers.sh [--check] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --dir DIR  where bench/make-image.sh wrote the image and its layout (default
#              <repo>/target/bench; env ACIKIT_BENCH_DIR); scratch files go to a temporary
#              folder inside DIR.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 1 14 "$@"

MAX_GROWTH=1000000

bench_binary
bin=$ACIKIT_BIN
layout=$dir/layout
tar0=$dir/debian-minbase.tar
if [ ! -s "$tar0" ] || [ ! -d "$layout" ]; then
    "$here/make-image.sh" "$dir" >/dev/null
fi

work=$(mktemp -d "$dir/.writers-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/rootfs/var/log"
truncate -s 64M "$work/extra/rootfs/var/log/big-sparse"
printf 'user entry' | dd of="$work/extra/rootfs/var/log/big-sparse" bs=1 seek=4096000 conv=notrunc 2>/dev/null

log "packing the rootfs with each writer"
(cd "$layout" && tar --format=gnu -cf "$work/gnu-dense.tar" manifest rootfs)
(cd "$layout" && bsdtar --format=pax -cf "$work/bsdtar.tar" manifest rootfs)
(cd "$layout" && python3 -c "import tarfile,sys; t=tarfile.open(sys.argv[1],'w',format=tarfile.PAX_FORMAT); t.add('manifest'); t.add('rootfs'); t.close()" "$work/python.tar")
for kind in sparse dense; do
    flag=; [ $kind = sparse ] && flag=--sparse
    tar --format=gnu $flag -cf "$work/$kind-64m.tar" -C "$layout" manifest rootfs \
        -C "$work/extra" rootfs/var/log/big-sparse
done

store=$work/store
bytes() { du -sB1 "$1" 2>/dev/null | cut -f1; }
fail=0
prev_total=0 prev_recipes=0
printf '%-16s %12s %12s %12s %14s\n' image store recipes objects growth-beyond-recipe
for t in "$tar0" "$work/gnu-dense.tar" "$work/bsdtar.tar" "$work/python.tar" \
         "$work/sparse-64m.tar" "$work/dense-64m.tar"; do
    "$bin" --store "$store" import "$t" >/dev/null
    sync
    total=$(bytes "$store") recipes=$(bytes "$store/recipes") objects=$(bytes "$store/objects")
    growth=$(( (total - prev_total) - (recipes - prev_recipes) ))
    name=$(basename "$t" .tar)
    printf '%-16s %12d %12d %12d %14d\n' "$name" "$total" "$recipes" "$objects" "$growth"
    if [ "$prev_total" -gt 0 ] && [ "$name" != sparse-64m ] && [ "$growth" -ge $MAX_GROWTH ]; then
        echo "FAIL  $name grew the store by $growth bytes beyond its recipe (< $MAX_GROWTH)"
        fail=1
    fi
    if [ "$name" = sparse-64m ] && [ "$growth" -ge $MAX_GROWTH ]; then
        echo "FAIL  the 64 MiB sparse file took $growth bytes (< $MAX_GROWTH)"
        fail=1
    fi
    prev_total=$total prev_recipes=$recipes
done
"$bin" --store "$store" stats
[ $fail = 0 ] && echo "PASS  every extra image grew the store by < $MAX_GROWTH bytes beyond its recipe"
[ $check = 1 ] && exit $fail
exit 0
