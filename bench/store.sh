#!/usr/bin/env bash
# Store benchmark: `acikit import`, `acikit export` and the store's size on disk, against what the
# system tools do with the same image, measured in the same run, as ratios.
#
# Usage: bench/store.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --runs N   timed runs per command (default 5, plus one warm-up)
#   --dir DIR  where bench/make-image.sh wrote the images (default <repo>/target/bench;
#              env ACIKIT_BENCH_DIR). Missing images are built by make-image.sh (which reads
#              ACIKIT_BENCH_ROOTFS). Scratch stores go to a temporary folder inside DIR, so that
#              stores, extracted trees and exports share the image's file system.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#   ACIKIT_BENCH_LOOP=1  time with the shell loop even when hyperfine is installed
#
# Targets, on the gzip image (debian-minbase.aci), each import into an empty store:
#   median(acikit import) / median(gzip -dc FILE | sha512sum)          <= 1.20
#   median(acikit import) / median(tar -xzf FILE -C EMPTY_DIR)         <  1.00
#   peak RSS of `acikit import`                                         < 100 MB
#   median(acikit export --compression none) / median(sha512sum TAR)   <= 1/0.9 (speed >= 0.9x)
#   store on disk after one import / the tree `tar -xzf` extracts       <= 1.05
#   growth of the store when a second version (~3 MB of file contents changed) is imported
#                                       <= 1.1 x changed bytes + the second version's recipe
# Sizes on disk are allocated bytes (`du -s --block-size=1`), the same measure for every tree;
# the store is measured whole (objects, recipes, index.db and its WAL files, empty folders).
# The second version is built once from DIR/layout (cached as DIR/debian-minbase-v2.aci): a
# hardlink copy of the layout, version label 2, and the three regular files nearest to 1 MiB
# (by size, then path) overwritten with random bytes of the same size (owner, mode, xattrs and
# times kept), packed like make-image.sh does (GNU tar --format=posix --xattrs, gzip -6).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 28 "$@"

MAX_IMPORT_RATIO=1.20
MAX_IMPORT_TAR_RATIO=1.00 # strictly below
MAX_RSS_KB=$((100 * 1024))
MAX_EXPORT_RATIO=$(awk 'BEGIN { printf "%.3f", 1 / 0.9 }')
MAX_DISK_RATIO=1.05
GROWTH_FACTOR=1.1


[ -x /usr/bin/time ] || { log "GNU time missing: apt-get install -y time"; exit 1; }

bench_binary
bin=$ACIKIT_BIN

image=$dir/debian-minbase.aci
tarball=$dir/debian-minbase.tar
if [ ! -s "$image" ] || [ ! -s "$tarball" ] || [ ! -s "$dir/debian-minbase.id" ] \
    || [ ! -d "$dir/layout/rootfs" ]; then
    "$here/make-image.sh" "$dir" >/dev/null
fi
expected_id=$(tr -d '[:space:]' < "$dir/debian-minbase.id")

mkdir -p "$dir"
# Trees are never deleted while the benchmark runs, only moved to a trash folder (deleted at
# exit): on ext4 without a journal, the inode allocator skips inodes freed in the last 60 s (360 s
# while their inode table block is dirty), one block lookup each, so creating thousands of files
# soon after `rm -rf` of a tree of thousands makes tar and import up to several times slower
# (kernel profile: find_inode_bit, recently_deleted, find_get_block_common). For the same reason
# a run starting less than 6 minutes after the previous one's cleanup waits for the rest (there,
# only; ACIKIT_BENCH_COOLDOWN=SECONDS changes the 360). Needs ~(2 x runs + 8) x the tree's size.
stamp=$dir/.store-bench.cleanup # touched when a run has deleted its trees
fs_type=$(df --output=fstype "$dir" | tail -n 1 | tr -d ' ')
# the block device's kernel name (vda, dm-0...), which names its journal in /proc/fs/jbd2 (NAME-8)
fs_majmin=$(findmnt -no MAJ:MIN -T "$dir" 2>/dev/null | tr -d ' ' || true)
fs_dev=$(basename "$(readlink "/sys/dev/block/$fs_majmin" 2>/dev/null || true)")
journaled=$( (ls /proc/fs/jbd2 2>/dev/null || true) | awk -v d="$fs_dev" 'index($0, d "-") == 1 { n++ } END { print n + 0 }')
cooldown=${ACIKIT_BENCH_COOLDOWN:-360}
if [ "$fs_type" = ext4 ] && [ "$journaled" = 0 ] && [ -e "$stamp" ]; then
    age=$(($(date +%s) - $(stat -c %Y "$stamp")))
    if [ "$age" -lt "$cooldown" ]; then
        log "ext4 without a journal, and a previous run deleted its trees ${age} s ago: waiting $((cooldown - age)) s"
        sleep $((cooldown - age))
    fi
fi
work=$(mktemp -d "$dir/.store-bench.XXXXXX")
trap 'rm -rf "$work"; touch "$stamp"' EXIT
trash=$work/trash
mkdir -p "$trash"
n_trash=0
discard() { # PATH...: moved into the trash
    local p
    for p in "$@"; do
        if [ -e "$p" ]; then n_trash=$((n_trash + 1)); mv "$p" "$trash/$n_trash"; fi
    done
}

# ---------------------------------------------------------------------------------------------
# The second version (cached beside the first).
v2=$dir/debian-minbase-v2.aci
v2_changed=$dir/debian-minbase-v2.changed # "bytes path..." of the files changed
if [ ! -s "$v2" ] || [ ! -s "$v2_changed" ] || [ "$v2" -ot "$tarball" ]; then
    log "building the second version $v2"
    l2=$work/layout-v2
    # Hardlinks: nothing is copied but the files changed below, each replaced by a new inode
    # (never written through a link, so the original layout is untouched).
    cp -al "$dir/layout" "$l2"
    rm "$l2/manifest"
    sed -E 's/("name": *"version", *"value": *)"[^"]*"/\1"2"/' "$dir/layout/manifest" > "$l2/manifest"
    touch -r "$dir/layout/manifest" "$l2/manifest"
    if cmp -s "$dir/layout/manifest" "$l2/manifest"; then
        log "could not change the version label of $dir/layout/manifest"; exit 1
    fi
    # The three files nearest to 1 MiB, single-linked (no hardlink set changes shape).
    mapfile -t picked < <(cd "$l2" && find rootfs -type f -links 2 -size +256k -size -4096k -printf '%s %p\n' \
        | awk '{ d = $1 - 1048576; if (d < 0) d = -d; printf "%d %s\n", d, $0 }' \
        | sort -k1,1n -k3 | head -n 3 | cut -d' ' -f2-)
    [ "${#picked[@]}" = 3 ] || { log "found ${#picked[@]} files of ~1 MiB to change, need 3"; exit 1; }
    changed=0
    for line in "${picked[@]}"; do
        size=${line%% *}
        f=$l2/${line#* }
        parent=$(dirname "$f")
        touch -r "$parent" "$work/dir-times"
        cp -a "$f" "$f.acikit-v2"                 # new inode: owner, mode, xattrs, times
        head -c "$size" /dev/urandom > "$f.acikit-v2"
        touch -r "$f" "$f.acikit-v2"
        mv -f "$f.acikit-v2" "$f"
        touch -r "$work/dir-times" "$parent"
        changed=$((changed + size))
    done
    tar --format=posix --xattrs -C "$l2" -cf - manifest rootfs | gzip -6 -c > "$v2.tmp"
    mv "$v2.tmp" "$v2"
    { echo "$changed"; printf '%s\n' "${picked[@]}"; } > "$v2_changed"
    discard "$l2"
fi
changed_bytes=$(head -n 1 "$v2_changed")
v2_id=$("$bin" id "$v2" | tr -d '[:space:]')

# ---------------------------------------------------------------------------------------------
# Helpers (as in bench/archive.sh, plus a per-command preparation).

# "median_wall mean_cpu min_wall" (seconds; cpu = user + system) of a shell command over $runs runs,
# after one warm-up; `prep` runs before each, untimed
median_loop() {
    local prep=$1 cmd=$2 i t0 t1
    sh -c "$prep"; sh -c "$cmd" >/dev/null
    for ((i = 0; i < runs; i++)); do
        sh -c "$prep"
        t0=$(date +%s.%N)
        /usr/bin/time -f '%U %S' -o "$work/cpu" sh -c "$cmd" >/dev/null
        t1=$(date +%s.%N)
        echo "$t0 $t1 $(tail -n 1 "$work/cpu")" | awk '{ printf "%.6f %.2f\n", $2 - $1, $3 + $4 }'
    done | sort -n | awk '{ w[NR] = $1; c += $2 }
        END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; print m, c / NR, w[1] }'
}

# time_all NAME PREP1 CMD1 PREP2 CMD2 ... : prints "median_wall mean_cpu min_wall" (seconds) per command
time_all() {
    local name=$1; shift
    if [ -z "${ACIKIT_BENCH_LOOP:-}" ] && command -v hyperfine >/dev/null; then
        # one --prepare per command, in the commands' order
        local preps=() cmds=()
        while [ $# -gt 0 ]; do preps+=(--prepare "$1"); cmds+=("$2"); shift 2; done
        hyperfine --style none --warmup 1 --runs "$runs" --export-csv "$work/$name.csv" \
            "${preps[@]}" "${cmds[@]}" >&2
        # command,mean,stddev,median,user,system,min,max (the command may hold commas)
        tail -n +2 "$work/$name.csv" | awk -F, '{ print $(NF - 4), $(NF - 3) + $(NF - 2), $(NF - 1) }'
    else
        while [ $# -gt 0 ]; do median_loop "$1" "$2"; shift 2; done
    fi
}

# peak RSS in kB of an import into an empty store (max over 3 runs)
peak_rss_import() {
    local i max=0 kb
    for i in 1 2 3; do
        discard "$work/rss-store"
        /usr/bin/time -f %M -o "$work/rss" "$bin" --store "$work/rss-store" import "$image" >/dev/null
        kb=$(tail -n 1 "$work/rss")
        [ "$kb" -gt "$max" ] && max=$kb
    done
    discard "$work/rss-store"
    echo "$max"
}

du_bytes() { du -s --block-size=1 "$1" | cut -f1; }
wal_bytes() { # the index's WAL and shared-memory files, when present
    local f t=0
    for f in "$1"/index.db-wal "$1"/index.db-shm; do
        if [ -e "$f" ]; then t=$((t + $(du_bytes "$f"))); fi
    done
    echo "$t"
}
du_top() { (cd "$1" && du -s --block-size=1 -- * | awk '{ printf "%s%s=%s", sep, $2, $1; sep = " " }'); }
json_num() { sed -n "s/.*\"$1\": *\([0-9.eE+-]*\).*/\1/p" | head -n 1; } # KEY < JSON
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

fail=0
verdicts=$work/verdicts
: > "$verdicts"
verdict() { # label ok?
    if [ "$2" = 1 ]; then echo "PASS  $1" >> "$verdicts"; else echo "FAIL  $1" >> "$verdicts"; fail=1; fi
}

# ---------------------------------------------------------------------------------------------
# Correctness first, and the disk figures: one image in a fresh store, exported back byte for byte.
store=$work/store
log "import into a fresh store, export, cmp"
"$bin" --store "$store" import "$image" >/dev/null
wal_v1=$(wal_bytes "$store")
listed=$("$bin" --store "$store" list --json)
grep -q "\"$expected_id\"" <<< "$listed" || { log "FAIL: the store does not list $expected_id"; exit 1; }
"$bin" --store "$store" export "$expected_id" "$work/export.tar" --compression none >/dev/null
cmp "$work/export.tar" "$tarball" || { log "FAIL: the export differs from $tarball"; exit 1; }
rm -f "$work/export.tar"
stats1=$("$bin" --store "$store" stats --json)
store_v1=$(du_bytes "$store")
recipe1=$(find "$store/recipes" -name "${expected_id#sha512-}.recipe")
recipe1_bytes=$(stat -c %s "$recipe1")
index_v1=$(du -c --block-size=1 "$store"/index.db* | tail -n 1 | cut -f1)
objects_v1=$(du_bytes "$store/objects")
recipes_v1=$(du_bytes "$store/recipes")
top_v1=$(du_top "$store")

mkdir "$work/extracted"
tar -xzf "$image" -C "$work/extracted"
tree_bytes=$(du_bytes "$work/extracted")
discard "$work/extracted"

log "import of the second version into the same store"
"$bin" --store "$store" import "$v2" >/dev/null
wal_v2=$(wal_bytes "$store")
# Every size is taken after a `stats`, which closes the index cleanly (its WAL checkpointed).
stats2=$("$bin" --store "$store" stats --json)
store_v2=$(du_bytes "$store")
recipe2=$(find "$store/recipes" -name "${v2_id#sha512-}.recipe")
[ -n "$recipe2" ] || { log "FAIL: no recipe for $v2_id"; exit 1; }
recipe2_bytes=$(stat -c %s "$recipe2")
recipe2_disk=$(du_bytes "$recipe2")
index_v2=$(du -c --block-size=1 "$store"/index.db* | tail -n 1 | cut -f1)
objects_v2=$(du_bytes "$store/objects")
recipes_v2=$(du_bytes "$store/recipes")
top_v2=$(du_top "$store")
growth=$((store_v2 - store_v1))
growth_limit=$(awk -v c="$changed_bytes" -v r="$recipe2_disk" -v f="$GROWTH_FACTOR" 'BEGIN { printf "%d", f * c + r }')
"$bin" --store "$store" rm "$v2_id" >/dev/null

# ---------------------------------------------------------------------------------------------
# Times.
tar_mb=$(($(stat -c %s "$tarball") / 1000000))
echo "acikit store benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "load:    $(cut -d" " -f1-3 /proc/loadavg) (1, 5, 15 min averages at start; other work on the machine skews times)"
echo "binary:  $bin"
echo "image:   $image ($(mb "$(stat -c %s "$image")") MB gzip, tar $tar_mb MB), $runs runs each, median"
echo "scratch: $work ($(df --output=fstype "$work" | tail -n 1 | tr -d ' '))"
echo

q() { printf "'%s'" "$1"; } # single-quoted for sh -c (paths without quotes)
# shell text for a preparation: move PATH into the trash under a fresh name
discard_sh() { printf 'if [ -e %s ]; then mv %s %s/"$(date +%%s%%N)"; fi' "$(q "$1")" "$(q "$1")" "$(q "$trash")"; }
# Flush what the steps above left dirty (untimed), so that no timed run pays for it.
sync -f "$work"
log "timing import"
mapfile -t imp < <(time_all import \
    "true" "gzip -dc $(q "$image") | sha512sum" \
    "$(discard_sh "$work/x") && mkdir $(q "$work/x")" "tar -xzf $(q "$image") -C $(q "$work/x")" \
    "$(discard_sh "$work/s")" "$(q "$bin") --store $(q "$work/s") import $(q "$image")")
discard "$work/x" "$work/s"
log "peak RSS of import"
rss=$(peak_rss_import)

sync -f "$work" # the trees tar left dirty: the exports' own fsync should not wait behind them
log "timing export"
mapfile -t exp < <(time_all export \
    "true" "sha512sum $(q "$tarball")" \
    "rm -f $(q "$work/out.tar")" \
    "$(q "$bin") --store $(q "$store") export $expected_id $(q "$work/out.tar") --compression none")
rm -f "$work/out.tar"

read -r base_w base_c base_m <<< "${imp[0]}"
read -r tar_w tar_c tar_m <<< "${imp[1]}"
read -r imp_w imp_c imp_m <<< "${imp[2]}"
read -r sha_w sha_c sha_m <<< "${exp[0]}"
read -r exp_w exp_c exp_m <<< "${exp[1]}"
r_imp=$(ratio "$imp_w" "$base_w")
r_imp_tar=$(ratio "$imp_w" "$tar_w")
r_exp=$(ratio "$exp_w" "$sha_w")
speed_exp=$(ratio "$sha_w" "$exp_w")
r_disk=$(ratio "$store_v1" "$tree_bytes")

echo "Times: median wall seconds; in brackets, mean CPU seconds (user + system, all threads); min wall."
echo
printf '| operation | command | median s (CPU s) | min s | ratio (medians) | target |\n'
printf '| --- | --- | ---: | ---: | ---: | --- |\n'
printf '| import baseline | `gzip -dc FILE \\| sha512sum` | %.3f (%.2f) | %.3f | 1 | |\n' "$base_w" "$base_c" "$base_m"
printf '| extract | `tar -xzf FILE -C EMPTY_DIR` | %.3f (%.2f) | %.3f | %s | |\n' "$tar_w" "$tar_c" "$tar_m" "$(ratio "$tar_w" "$base_w")"
printf '| import | `acikit --store EMPTY import FILE` | %.3f (%.2f) | %.3f | %s (/ tar: %s) | <= %s; / tar < 1 |\n' \
    "$imp_w" "$imp_c" "$imp_m" "$r_imp" "$r_imp_tar" "$MAX_IMPORT_RATIO"
printf '| export baseline | `sha512sum TAR` | %.3f (%.2f) | %.3f | 1 | |\n' "$sha_w" "$sha_c" "$sha_m"
printf '| export | `acikit export ID OUT --compression none` | %.3f (%.2f) | %.3f | %s (speed %sx) | <= %s (speed >= 0.9x) |\n' \
    "$exp_w" "$exp_c" "$exp_m" "$r_exp" "$speed_exp" "$MAX_EXPORT_RATIO"
echo
echo "Disk (allocated bytes, du -s --block-size=1):"
printf '| tree | bytes | MB |\n| --- | ---: | ---: |\n'
printf '| `tar -xzf` into an empty folder | %d | %s |\n' "$tree_bytes" "$(mb "$tree_bytes")"
printf '| store with v1 (whole folder) | %d | %s |\n' "$store_v1" "$(mb "$store_v1")"
printf '| - of which objects/ | %d | %s |\n' "$objects_v1" "$(mb "$objects_v1")"
printf '| - of which index.db* | %d | %s |\n' "$index_v1" "$(mb "$index_v1")"
printf '| - of which recipes/ | %d | %s |\n' "$recipes_v1" "$(mb "$recipes_v1")"
printf '| - v1 recipe (file size) | %d | %s |\n' "$recipe1_bytes" "$(mb "$recipe1_bytes")"
printf '| (index WAL + shm left by the v1 import, before the next command checkpoints it) | %d | %s |\n' "$wal_v1" "$(mb "$wal_v1")"
printf '| store with v1 + v2 | %d | %s |\n' "$store_v2" "$(mb "$store_v2")"
printf '| growth v1 -> v2 | %d | %s |\n' "$growth" "$(mb "$growth")"
printf '| - of which objects/ | %d | %s |\n' "$((objects_v2 - objects_v1))" "$(mb "$((objects_v2 - objects_v1))")"
printf '| - of which index.db* | %d | %s |\n' "$((index_v2 - index_v1))" "$(mb "$((index_v2 - index_v1))")"
printf '| - of which recipes/ | %d | %s |\n' "$((recipes_v2 - recipes_v1))" "$(mb "$((recipes_v2 - recipes_v1))")"
other=$((growth - (objects_v2 - objects_v1) - (index_v2 - index_v1) - (recipes_v2 - recipes_v1)))
printf '| - of which the rest (tmp/, locks/, config/, the folder) | %d | %s |\n' "$other" "$(mb "$other")"
printf '| (index WAL + shm left by the v2 import, before the next command checkpoints it) | %d | %s |\n' "$wal_v2" "$(mb "$wal_v2")"
printf '| changed file contents in v2 | %d | %s |\n' "$changed_bytes" "$(mb "$changed_bytes")"
printf '| v2 recipe (file size; allocated) | %d; %d | %s |\n' "$recipe2_bytes" "$recipe2_disk" "$(mb "$recipe2_bytes")"
printf '| growth limit: 1.1 x changed + v2 recipe | %d | %s |\n' "$growth_limit" "$(mb "$growth_limit")"
echo
echo "changed files (bytes path): $(tail -n +2 "$v2_changed" | paste -sd, - | sed 's/,/, /g')"
echo "store after v1 (du): $top_v1"
echo "store after v2 (du): $top_v2"
echo "stats --json, v1 alone: $(tr -d ' \n' <<< "$stats1")"
echo "stats --json, v1 + v2:  $(tr -d ' \n' <<< "$stats2")"
echo "dedup ratio with v1 + v2: $(json_num dedup_ratio <<< "$stats2")"
echo

verdict "import/baseline = $r_imp (<= $MAX_IMPORT_RATIO)" "$(le "$r_imp" "$MAX_IMPORT_RATIO" && echo 1 || echo 0)"
verdict "import/tar -xzf = $r_imp_tar (< $MAX_IMPORT_TAR_RATIO)" "$(lt "$r_imp_tar" "$MAX_IMPORT_TAR_RATIO" && echo 1 || echo 0)"
verdict "import peak RSS = $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') MB (< 100 MB)" "$([ "$rss" -lt "$MAX_RSS_KB" ] && echo 1 || echo 0)"
verdict "export/sha512sum = $r_exp (<= $MAX_EXPORT_RATIO, i.e. speed $speed_exp >= 0.9x)" "$(le "$r_exp" "$MAX_EXPORT_RATIO" && echo 1 || echo 0)"
verdict "store/extracted tree = $r_disk (<= $MAX_DISK_RATIO)" "$(le "$r_disk" "$MAX_DISK_RATIO" && echo 1 || echo 0)"
verdict "v2 growth = $growth bytes (<= $growth_limit = 1.1 x $changed_bytes + $recipe2_disk)" "$([ "$growth" -le "$growth_limit" ] && echo 1 || echo 0)"
echo "targets:"
cat "$verdicts"

if [ "$fail" = 1 ] && [ "$check" = 1 ]; then
    exit 1
fi
exit 0
