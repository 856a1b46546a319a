#!/usr/bin/env bash
# Render benchmark: `acikit render` of the Debian minbase image by each per-run strategy
# (overlay, hardlink, copy), against `cp -a` of the same rendered tree, measured in the same
# run, as ratios; and the disk a second overlay run costs.
#
# Usage: bench/render.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --runs N   timed runs per command (default 10, plus one warm-up)
#   --dir DIR  where bench/make-image.sh wrote the images (default <repo>/target/bench;
#              env ACIKIT_BENCH_DIR). A missing image is built by make-image.sh (which reads
#              ACIKIT_BENCH_ROOTFS). The scratch store, runs and copies go to a temporary
#              folder inside DIR (one file system, so hardlink runs work).
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#   ACIKIT_BENCH_LOOP=1  time with the shell loop even when hyperfine is installed
#   ACIKIT_BENCH_COOLDOWN=SECONDS  wait after a benchmark's cleanup on journal-less ext4 (360)
#
# What runs: import into a fresh store; a first render (timed once: it builds the exploded
# tree, which later renders reuse); a first `copy` render, SRC, kept as the source of cp -a;
# the disk of one more overlay run; then, timed:
#   floor     acikit --store S list              (process start + store open: in every acikit time)
#   overlay   acikit --store S render ID T --strategy overlay    (prepare: release the previous
#             run; needs root, skipped otherwise)
#   cp -a     cp -a SRC T
#   composefs acikit render ID T --strategy composefs: first (prepare: rm -rf S/composefs, so the
#             EROFS image is written each time; in rounds with cp -a SRC T) and later renders,
#             its new disk, and `tar -cf - . | cat >/dev/null` over a composefs run against an
#             overlay run (root only; ACIKIT_BENCH_COMPOSEFS_ONLY=1 stops after these)
#   cp -al    cp -al SRC T       (the system's hardlink farm of the same tree, for reference)
#   hardlink  acikit --store S render ID T --strategy hardlink
#   copy      acikit --store S render ID T --strategy copy
# cp -a, cp -al, hardlink and copy take turns (round by round, see time_rounds: on this
# virtual machine the cost of writing 200 MB of new page cache swings by 10x with the state of
# guest memory, so running each command's runs back to back would compare states, not tools),
# each into a fresh target, and nothing is deleted while they are timed (the runs are released
# afterwards, the copies moved to a trash folder deleted at exit); every preparation runs
# `sync`, so no run pays for the previous one's writeback. Then, for information, cp -a,
# hardlink and copy again with the previous tree deleted by the preparation (`rm -rf T`;
# `acikit release T`), as a runtime that releases and renders in turn would: on ext4 without a
# journal (as here) the inode allocator skips recently freed inodes (see bench/store.sh,
# "trash"), so those rows measure that as much as the tools.
#
# Targets (medians):
#   overlay render (second and later)                                     < 50 ms
#   new disk of one overlay run: du -s --block-size=1 of the store folder (runs/<key>/ with
#     upper/ and work/ included) with the run minus without              < 1 MB (10^6 bytes)
#   median(cp -a) / median(hardlink render)                               >= 5
#   median(copy render) / median(cp -a)                                   <= 1.0
#   first composefs render (no image cached)                              <= 150 ms
#   new disk of the first composefs render (image + run folder) / tar     <= 3 %
#   later composefs render                                                <= 20 ms
#   reading a composefs run / reading an overlay run (medians)            <= 1.1
# The first render and each copy are checked against DIR/layout/rootfs first (owners, modes,
# sizes, mtimes, link targets, hardlink groups; contents for the copy).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 10 45 "$@"

MAX_OVERLAY_S=0.050
MAX_OVERLAY_DISK=1000000
MIN_HARDLINK_SPEEDUP=5
MAX_COPY_RATIO=1.0
MAX_CFS_FIRST_S=0.150
MAX_CFS_LATER_S=0.020
MAX_CFS_DISK_PCT=3
MAX_CFS_READ_RATIO=1.1


bench_binary
bin=$ACIKIT_BIN

image=$dir/debian-minbase.aci
if [ ! -s "$image" ] || [ ! -s "$dir/debian-minbase.id" ] || [ ! -d "$dir/layout/rootfs" ]; then
    "$here/make-image.sh" "$dir" >/dev/null
fi
expected_id=$(tr -d '[:space:]' < "$dir/debian-minbase.id")
root=0
[ "$(id -u)" = 0 ] && root=1

mkdir -p "$dir"
# As in bench/store.sh: on ext4 without a journal, a run starting less than 6 minutes after a
# benchmark's cleanup (this one's or store.sh's: both stamps are read) waits for the rest
# (ACIKIT_BENCH_COOLDOWN=SECONDS changes the 360), since files created soon after thousands were
# deleted cost several times more.
stamp=$dir/.render-bench.cleanup # touched when a run has deleted its trees
fs_type=$(df --output=fstype "$dir" | tail -n 1 | tr -d ' ')
# the block device's kernel name (vda, dm-0...), which names its journal in /proc/fs/jbd2 (NAME-8)
fs_majmin=$(findmnt -no MAJ:MIN -T "$dir" 2>/dev/null | tr -d ' ' || true)
fs_dev=$(basename "$(readlink "/sys/dev/block/$fs_majmin" 2>/dev/null || true)")
journaled=$( (ls /proc/fs/jbd2 2>/dev/null || true) | awk -v d="$fs_dev" 'index($0, d "-") == 1 { n++ } END { print n + 0 }')
cooldown=${ACIKIT_BENCH_COOLDOWN:-360}
if [ "$fs_type" = ext4 ] && [ "$journaled" = 0 ]; then
    for s in "$stamp" "$dir/.store-bench.cleanup"; do
        [ -e "$s" ] || continue
        age=$(($(date +%s) - $(stat -c %Y "$s")))
        if [ "$age" -lt "$cooldown" ]; then
            log "ext4 without a journal, and a benchmark deleted its trees ${age} s ago ($s): waiting $((cooldown - age)) s"
            sleep $((cooldown - age))
        fi
    done
fi
work=$(cd "$(mktemp -d "$dir/.render-bench.XXXXXX")" && pwd -P) # canonical: run records hold canonical paths
store=$work/store
trash=$work/trash
mkdir -p "$trash"
n_trash=0
discard() { # PATH...: moved into the trash (deleted at exit)
    local p
    for p in "$@"; do
        if [ -e "$p" ]; then n_trash=$((n_trash + 1)); mv "$p" "$trash/$n_trash"; fi
    done
}
# Every run still recorded in the store (record.json "target"), released; then any mount left
# under $work unmounted, so that `rm -rf` never walks into a mounted run.
release_all() {
    local rec t
    for rec in "$store"/runs/*/record.json; do
        [ -f "$rec" ] || continue
        t=$(sed -n 's/.*"target": *"\([^"]*\)".*/\1/p' "$rec" | head -n 1)
        [ -n "$t" ] && "$bin" --store "$store" release "$t" >/dev/null 2>&1 || true
    done
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}
cleanup() { release_all; rm -rf "$work"; touch "$stamp"; }
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Helpers (as in bench/store.sh).

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
        [ -x /usr/bin/time ] || { log "GNU time missing: apt-get install -y time"; exit 1; }
        while [ $# -gt 0 ]; do median_loop "$1" "$2"; shift 2; done
    fi
}

# time_rounds NAME PREP1 CMD1 PREP2 CMD2 ... : like time_all, but the commands take turns: one
# warm-up each, then $runs rounds in which every command runs once (in order in odd rounds,
# in reverse in even ones), so that a drifting machine state (page cache, guest memory the
# hypervisor took back, inodes freed recently) weighs on every command alike. Each round is
# one hyperfine call with --runs 1 (or the shell loop).
time_rounds() {
    local name=$1; shift
    local preps=() cmds=() n i r k order
    while [ $# -gt 0 ]; do preps+=("$1"); cmds+=("$2"); shift 2; done
    n=${#cmds[@]}
    for ((i = 0; i < n; i++)); do
        : > "$work/$name.$i"
        sh -c "${preps[$i]}"; sh -c "${cmds[$i]}" >/dev/null
    done
    for ((r = 1; r <= runs; r++)); do
        order=()
        for ((i = 0; i < n; i++)); do
            if ((r % 2)); then order+=("$i"); else order+=("$((n - 1 - i))"); fi
        done
        if [ -z "${ACIKIT_BENCH_LOOP:-}" ] && command -v hyperfine >/dev/null; then
            local args=()
            for i in "${order[@]}"; do args+=(--prepare "${preps[$i]}"); done
            for i in "${order[@]}"; do args+=("${cmds[$i]}"); done
            hyperfine --style none --runs 1 --export-csv "$work/$name.csv" "${args[@]}" >/dev/null
            k=0
            tail -n +2 "$work/$name.csv" | awk -F, '{ print $(NF - 4), $(NF - 3) + $(NF - 2) }' |
                while read -r w c; do echo "$w $c" >> "$work/$name.${order[$k]}"; k=$((k + 1)); done
        else
            [ -x /usr/bin/time ] || { log "GNU time missing: apt-get install -y time"; exit 1; }
            local t0 t1
            for i in "${order[@]}"; do
                sh -c "${preps[$i]}"
                t0=$(date +%s.%N)
                /usr/bin/time -f '%U %S' -o "$work/cpu" sh -c "${cmds[$i]}" >/dev/null
                t1=$(date +%s.%N)
                echo "$t0 $t1 $(tail -n 1 "$work/cpu")" |
                    awk '{ printf "%.6f %.2f\n", $2 - $1, $3 + $4 }' >> "$work/$name.$i"
            done
        fi
        log "  round $r/$runs done"
    done
    for ((i = 0; i < n; i++)); do
        sort -n "$work/$name.$i" | awk '{ w[NR] = $1; c += $2 }
            END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; print m, c / NR, w[1] }'
    done
}

du_bytes() { du -s --block-size=1 "$1" | cut -f1; }
df_used() { df -B1 --output=used "$1" | tail -n 1 | tr -d ' '; }
json_str() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; } # KEY < JSON
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.3f", b / 1e6 }'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

fail=0
verdicts=$work/verdicts
: > "$verdicts"
verdict() { # label ok?
    if [ "$2" = 1 ]; then echo "PASS  $1" >> "$verdicts"; else echo "FAIL  $1" >> "$verdicts"; fail=1; fi
}

# Metadata listing of a tree: path, type, mode, owner, group, size (not for directories: it
# depends on the folder's history), mtime, link target (and, with "links", the link count:
# hardlink groups).
listing() { # DIR [links]
    local fmt='%p %y %m %U %G %s %T@ %l'
    [ "${2:-}" = links ] && fmt="$fmt %n"
    (cd "$1" && find . -printf "$fmt\n" | awk '$2 == "d" { $6 = "-" } { print }' | LC_ALL=C sort)
}
contents() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum); }

# render STRATEGY TARGET: the --json report on stdout
render() { "$bin" --store "$store" render "$expected_id" "$2" --strategy "$1" --json; }

# ---------------------------------------------------------------------------------------------
# Import, first renders, correctness.
log "import into a fresh store"
t0=$(now)
"$bin" --store "$store" import "$image" >/dev/null
import_s=$(elapsed "$t0")

first_strategy=copy
[ "$root" = 1 ] && first_strategy=overlay
log "first render ($first_strategy): builds the exploded tree"
t0=$(now)
report=$(render "$first_strategy" "$work/first")
first_s=$(elapsed "$t0")
[ "$(json_str strategy <<< "$report")" = "$first_strategy" ] || { log "FAIL: first render: $report"; exit 1; }
# The root too: an overlay's root is its upper folder, which gets the lower root's times.
listing "$dir/layout/rootfs" > "$work/expected.list"
contents "$dir/layout/rootfs" > "$work/expected.sum"
listing "$work/first" > "$work/got.list"
cmp -s "$work/expected.list" "$work/got.list" \
    || { log "FAIL: the first render differs from $dir/layout/rootfs (owners, modes, sizes, times, links)"; exit 1; }
"$bin" --store "$store" release "$work/first" >/dev/null
store_tree=$(du_bytes "$store")

log "first copy render (the source of cp -a, kept until the end)"
src=$work/src
t0=$(now)
render copy "$src" >/dev/null
first_copy_s=$(elapsed "$t0")
listing "$src" links > "$work/got.list"
listing "$dir/layout/rootfs" links > "$work/expected.list"
cmp -s "$work/expected.list" "$work/got.list" \
    || { log "FAIL: the copy render differs from $dir/layout/rootfs (metadata or hardlink groups)"; exit 1; }
contents "$src" | cmp -s - "$work/expected.sum" \
    || { log "FAIL: the copy render's file contents differ from $dir/layout/rootfs"; exit 1; }
entries=$(wc -l < "$work/expected.list")
files=$(cd "$src" && find . -type f | wc -l)
tree_bytes=$(du_bytes "$src")

# ---------------------------------------------------------------------------------------------
# Disk of one more overlay run.
if [ "$root" = 1 ]; then
    log "disk of an overlay run"
    sync
    du_before=$(du_bytes "$store")
    df_before=$(df_used "$work")
    report=$(render overlay "$work/ov-disk")
    [ "$(json_str strategy <<< "$report")" = overlay ] || { log "FAIL: overlay render: $report"; exit 1; }
    sync
    du_after=$(du_bytes "$store")
    df_after=$(df_used "$work")
    run_dir=$(dirname "$(grep -l "\"$work/ov-disk\"" "$store"/runs/*/record.json)")
    upper_bytes=$(du_bytes "$run_dir/upper")
    run_dir_bytes=$(du_bytes "$run_dir")
    listing "$work/ov-disk" > "$work/got.list"
    listing "$dir/layout/rootfs" > "$work/expected.list"
    cmp -s "$work/expected.list" "$work/got.list" \
        || { log "FAIL: the overlay render differs from $dir/layout/rootfs"; exit 1; }
    "$bin" --store "$store" release "$work/ov-disk" >/dev/null
    disk_delta=$((du_after - du_before))
    df_delta=$((df_after - df_before))
fi

# ---------------------------------------------------------------------------------------------
# composefs (root): the first render with no composefs image cached (the image's metadata
# written as EROFS, no file copied), its new disk, later renders, and reading every file of a
# composefs run against an overlay run.
if [ "$root" = 1 ]; then
    log "composefs: first render, disk, later renders, reading"
    sync
    du_before_cfs=$(du_bytes "$store")
    report=$(render composefs "$work/cfs-disk")
    [ "$(json_str strategy <<< "$report")" = composefs ] || { log "FAIL: composefs render: $report"; exit 1; }
    # Link counts too, but the root's: overlayfs shows 1 for a merged directory.
    listing "$work/cfs-disk" links | sed '1s/ [0-9]*$//' > "$work/got.list"
    listing "$dir/layout/rootfs" links | sed '1s/ [0-9]*$//' > "$work/expected.list"
    cmp -s "$work/expected.list" "$work/got.list" \
        || { log "FAIL: the composefs render differs from $dir/layout/rootfs (metadata or hardlink groups)"; exit 1; }
    contents "$work/cfs-disk" | cmp -s - "$work/expected.sum" \
        || { log "FAIL: the composefs render's file contents differ from $dir/layout/rootfs"; exit 1; }
    sync
    cfs_disk=$(($(du_bytes "$store") - du_before_cfs))
    cfs_image_bytes=$(du_bytes "$store/composefs")
    tar_bytes=$(stat -c %s "$dir/debian-minbase.tar")
    "$bin" --store "$store" release "$work/cfs-disk" >/dev/null
    A1="$(printf "'%s'" "$bin") --store $(printf "'%s'" "$store")"
    cfs_first_prep="if [ -e '$work/cfs' ]; then $A1 release '$work/cfs' >/dev/null; fi; rm -rf '$store/composefs'; sync"
    cfs_later_prep="if [ -e '$work/cfs' ]; then $A1 release '$work/cfs' >/dev/null; fi"
    cfs_cmd="$A1 render $expected_id '$work/cfs' --strategy composefs >/dev/null"
    mkdir -p "$work/cfs-cp"
    mapfile -t cfs_first < <(time_rounds cfs-first \
        "$cfs_first_prep" "$cfs_cmd" \
        "rm -rf '$work/cfs-cp/t'; sync" "cp -a '$src' '$work/cfs-cp/t'")
    rm -rf "$work/cfs-cp"
    mapfile -t cfs_later < <(time_all cfs-later "$cfs_later_prep" "$cfs_cmd")
    # Reading every byte of every file, page cache warm for both: through `cat`, since GNU tar
    # skips reading contents when its archive is /dev/null.
    render composefs "$work/cfs" >/dev/null 2>&1 || true
    render overlay "$work/ov-read" >/dev/null
    mapfile -t cfs_read < <(time_rounds cfs-read \
        "true" "cd '$work/cfs' && tar -cf - . | cat >/dev/null" \
        "true" "cd '$work/ov-read' && tar -cf - . | cat >/dev/null")
    "$bin" --store "$store" release "$work/cfs" >/dev/null
    "$bin" --store "$store" release "$work/ov-read" >/dev/null
    read -r cf_w cf_c cf_m <<< "${cfs_first[0]}"
    read -r cfcp_w cfcp_c cfcp_m <<< "${cfs_first[1]}"
    read -r cl_w cl_c cl_m <<< "${cfs_later[0]}"
    read -r crd_w crd_c crd_m <<< "${cfs_read[0]}"
    read -r ord_w ord_c ord_m <<< "${cfs_read[1]}"
    cfs_disk_pct=$(awk -v a="$cfs_disk" -v b="$tar_bytes" 'BEGIN { printf "%.3f", 100 * a / b }')
    r_cfs_cp=$(ratio "$cfcp_w" "$cf_w")
    r_read=$(ratio "$crd_w" "$ord_w")
    {
        echo "composefs (median wall ms; in brackets, mean CPU ms; min wall ms):"
        printf '| operation | command | median ms (CPU ms) | min ms | ratio | target |\n| --- | --- | ---: | ---: | ---: | --- |\n'
        printf '| first composefs render (no image cached) | `rm -rf S/composefs; acikit render ID T --strategy composefs` | %s (%s) | %s | cp -a / first = %s | <= %s ms |\n' \
            "$(ms "$cf_w")" "$(ms "$cf_c")" "$(ms "$cf_m")" "$r_cfs_cp" "$(ms "$MAX_CFS_FIRST_S")"
        printf '| cp -a of the tree, same rounds | `cp -a SRC T` | %s (%s) | %s | 1 | |\n' "$(ms "$cfcp_w")" "$(ms "$cfcp_c")" "$(ms "$cfcp_m")"
        printf '| later composefs render | `acikit render ID T --strategy composefs` | %s (%s) | %s | | <= %s ms |\n' \
            "$(ms "$cl_w")" "$(ms "$cl_c")" "$(ms "$cl_m")" "$(ms "$MAX_CFS_LATER_S")"
        printf '| read a composefs run | `tar -cf - . \\| cat > /dev/null` | %s (%s) | %s | composefs / overlay = %s | <= %s |\n' \
            "$(ms "$crd_w")" "$(ms "$crd_c")" "$(ms "$crd_m")" "$r_read" "$MAX_CFS_READ_RATIO"
        printf '| read an overlay run | same | %s (%s) | %s | 1 | |\n' "$(ms "$ord_w")" "$(ms "$ord_c")" "$(ms "$ord_m")"
        printf '| new disk of the first composefs render (du delta: image + run folder) | | %d bytes | | %s %% of the %d-byte tar | <= %s %% |\n' \
            "$cfs_disk" "$cfs_disk_pct" "$tar_bytes" "$MAX_CFS_DISK_PCT"
        printf '| - of which the EROFS image folder | | %d bytes | | | |\n' "$cfs_image_bytes"
        echo
    } > "$work/composefs.txt"
    verdict "first composefs render = $(ms "$cf_w") ms (<= $(ms "$MAX_CFS_FIRST_S") ms; cp -a $(ms "$cfcp_w") ms)" "$(le "$cf_w" "$MAX_CFS_FIRST_S" && echo 1 || echo 0)"
    verdict "composefs first render new disk = $cfs_disk_pct % of the image (<= $MAX_CFS_DISK_PCT %)" "$(le "$cfs_disk_pct" "$MAX_CFS_DISK_PCT" && echo 1 || echo 0)"
    verdict "later composefs render = $(ms "$cl_w") ms (<= $(ms "$MAX_CFS_LATER_S") ms)" "$(le "$cl_w" "$MAX_CFS_LATER_S" && echo 1 || echo 0)"
    verdict "reading a composefs run / an overlay run = $r_read (<= $MAX_CFS_READ_RATIO)" "$(le "$r_read" "$MAX_CFS_READ_RATIO" && echo 1 || echo 0)"
    if [ -n "${ACIKIT_BENCH_COMPOSEFS_ONLY:-}" ]; then
        echo "acikit render benchmark (composefs only)  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load $(cut -d" " -f1-3 /proc/loadavg)"
        echo "binary:  $bin"
        echo "image:   $image, $runs runs each, median"
        echo
        cat "$work/composefs.txt"
        echo "targets:"
        cat "$verdicts"
        if [ "$fail" = 1 ] && [ "$check" = 1 ]; then exit 1; fi
        exit 0
    fi
fi

# ---------------------------------------------------------------------------------------------
# Times.
tar_mb=$(($(stat -c %s "$dir/debian-minbase.tar") / 1000000))
echo "acikit render benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "load:    $(cut -d" " -f1-3 /proc/loadavg) (1, 5, 15 min averages at start; other work on the machine skews times)"
echo "binary:  $bin"
echo "image:   $image (tar $tar_mb MB; rendered: $entries entries, $files regular files, $(mb "$tree_bytes") MB on disk), $runs runs each, median"
echo "scratch: $work ($(df --output=fstype "$work" | tail -n 1 | tr -d ' '))"
echo

q() { printf "'%s'" "$1"; } # single-quoted for sh -c (paths without quotes)
A="$(q "$bin") --store $(q "$store")"
# shell text: release the run at PATH if there is one
release_sh() { printf 'if [ -e %s ]; then %s release %s >/dev/null; fi' "$(q "$1")" "$A" "$(q "$1")"; }
render_sh() { printf '%s render %s %s --strategy %s >/dev/null' "$A" "$expected_id" "$(q "$2")" "$1"; }

if [ "$root" = 1 ]; then
    log "timing the floor and overlay renders"
    mapfile -t ov < <(time_all overlay \
        "true" "$A list" \
        "$(release_sh "$work/ov")" "$(render_sh overlay "$work/ov")")
    "$bin" --store "$store" release "$work/ov" >/dev/null
else
    log "timing the floor (overlay needs root: skipped)"
    mapfile -t ov < <(time_all floor "true" "$A list")
fi

# Copies into fresh targets, nothing deleted while timing. Each command has its slot NAME: the
# preparation syncs (no dirty data left from the previous run) and writes the next target,
# $work/fresh/NAME-N, to $work/next-NAME; the command reads it with the shell's `read`.
mkdir -p "$work/fresh"
slot() { # NAME: the slot's preparation (the slot starts at NAME-0, for a warm-up without one)
    echo 0 > "$work/counter-$1"
    echo "$work/fresh/$1-0" > "$work/next-$1"
    printf 'sync; n=$(( $(cat %s) + 1 )); echo $n > %s; echo %s-$n > %s' \
        "$(q "$work/counter-$1")" "$(q "$work/counter-$1")" "$(q "$work/fresh/$1")" "$(q "$work/next-$1")"
}
in_slot() { printf 'read t < %s; exec %s' "$(q "$work/next-$1")" "$2"; } # NAME CMD (target: "$t")
log "timing cp -a, cp -al, hardlink and copy renders (fresh targets, nothing deleted while timing)"
mapfile -t fresh < <(time_rounds fresh \
    "$(slot cp)" "$(in_slot cp "cp -a $(q "$src") \"\$t\"")" \
    "$(slot cpl)" "$(in_slot cpl "cp -al $(q "$src") \"\$t\"")" \
    "$(slot hl)" "$(in_slot hl "$A render $expected_id \"\$t\" --strategy hardlink >/dev/null")" \
    "$(slot cy)" "$(in_slot cy "$A render $expected_id \"\$t\" --strategy copy >/dev/null")")
log "releasing the fresh runs"
release_all # the source run too: it is not needed any more
discard "$work/fresh"

# For information: the previous tree deleted before each run (`acikit release`, `rm -rf`), as
# a runtime that releases and renders in turn would. Last, since it deletes.
log "timing cp -a, hardlink and copy renders (the previous tree deleted before each run)"
render copy "$src" >/dev/null
mapfile -t churn < <(time_rounds churn \
    "rm -rf $(q "$work/cp"); sync" "cp -a $(q "$src") $(q "$work/cp")" \
    "$(release_sh "$work/hl"); sync" "$(render_sh hardlink "$work/hl")" \
    "$(release_sh "$work/cy"); sync" "$(render_sh copy "$work/cy")")
release_all
rm -rf "$work/cp"

read -r floor_w floor_c floor_m <<< "${ov[0]}"
if [ "$root" = 1 ]; then read -r ov_w ov_c ov_m <<< "${ov[1]}"; fi
read -r cp_w cp_c cp_m <<< "${fresh[0]}"
read -r cpl_w cpl_c cpl_m <<< "${fresh[1]}"
read -r hl_w hl_c hl_m <<< "${fresh[2]}"
read -r cy_w cy_c cy_m <<< "${fresh[3]}"
read -r ccp_w ccp_c ccp_m <<< "${churn[0]}"
read -r chl_w chl_c chl_m <<< "${churn[1]}"
read -r ccy_w ccy_c ccy_m <<< "${churn[2]}"
r_hl=$(ratio "$cp_w" "$hl_w")
r_cy=$(ratio "$cy_w" "$cp_w")
r_cpl=$(ratio "$cp_w" "$cpl_w")
r_hl_cpl=$(ratio "$hl_w" "$cpl_w")
r_chl=$(ratio "$ccp_w" "$chl_w")
r_ccy=$(ratio "$ccy_w" "$ccp_w")

echo "Once: import $import_s s; first render ($first_strategy, builds the exploded tree) $first_s s;"
echo "      first copy render (the cp -a source) $first_copy_s s; store after the tree is built: $(mb "$store_tree") MB."
echo
echo "Times: median wall ms; in brackets, mean CPU ms (user + system); min wall ms."
echo
row() { # operation command wall cpu min ratio target
    printf '| %s | %s | %s (%s) | %s | %s | %s |\n' "$1" "$2" "$(ms "$3")" "$(ms "$4")" "$(ms "$5")" "$6" "$7"
}
printf '| operation | command | median ms (CPU ms) | min ms | ratio (medians) | target |\n'
printf '| --- | --- | ---: | ---: | ---: | --- |\n'
row floor '`acikit --store S list`' "$floor_w" "$floor_c" "$floor_m" "" ""
if [ "$root" = 1 ]; then
    row "overlay render" '`acikit render ID T --strategy overlay`' "$ov_w" "$ov_c" "$ov_m" \
        "minus floor: $(ms "$(awk -v a="$ov_w" -v b="$floor_w" 'BEGIN { print a - b }')") ms" "< $(ms "$MAX_OVERLAY_S") ms"
fi
row "cp -a" '`cp -a SRC T`' "$cp_w" "$cp_c" "$cp_m" 1 ""
row "cp -al (hardlink farm, for reference)" '`cp -al SRC T`' "$cpl_w" "$cpl_c" "$cpl_m" "cp -a / cp -al = $r_cpl" ""
row "hardlink render" '`acikit render ID T --strategy hardlink`' "$hl_w" "$hl_c" "$hl_m" \
    "cp -a / hardlink = **$r_hl** (hardlink / cp -al = $r_hl_cpl)" ">= $MIN_HARDLINK_SPEEDUP"
row "copy render" '`acikit render ID T --strategy copy`' "$cy_w" "$cy_c" "$cy_m" "copy / cp -a = **$r_cy**" "<= $MAX_COPY_RATIO"
row "cp -a, previous copy deleted first" 'prepare: `rm -rf T`' "$ccp_w" "$ccp_c" "$ccp_m" 1 "(info)"
row "hardlink, previous run released first" 'prepare: `acikit release T`' "$chl_w" "$chl_c" "$chl_m" "cp -a / hardlink = $r_chl" "(info)"
row "copy, previous run released first" 'prepare: `acikit release T`' "$ccy_w" "$ccy_c" "$ccy_m" "copy / cp -a = $r_ccy" "(info)"
echo
if [ "$root" = 1 ]; then
    echo "Disk of one more overlay run (bytes):"
    printf '| measure | bytes | MB |\n| --- | ---: | ---: |\n'
    printf '| store before (du -s --block-size=1) | %d | %s |\n' "$du_before" "$(mb "$du_before")"
    printf '| store with the run | %d | %s |\n' "$du_after" "$(mb "$du_after")"
    printf '| **new disk (du delta)** | %d | %s |\n' "$disk_delta" "$(mb "$disk_delta")"
    printf '| - of which the run folder (record, lock, upper/, work/) | %d | %s |\n' "$run_dir_bytes" "$(mb "$run_dir_bytes")"
    printf '| - of which upper/ | %d | %s |\n' "$upper_bytes" "$(mb "$upper_bytes")"
    printf '| df used delta (whole file system: other work counts too) | %d | %s |\n' "$df_delta" "$(mb "$df_delta")"
    echo
fi

[ -f "$work/composefs.txt" ] && cat "$work/composefs.txt"
if [ "$root" = 1 ]; then
    verdict "overlay render = $(ms "$ov_w") ms (< $(ms "$MAX_OVERLAY_S") ms; floor $(ms "$floor_w") ms)" "$(lt "$ov_w" "$MAX_OVERLAY_S" && echo 1 || echo 0)"
    verdict "overlay run new disk = $disk_delta bytes (< $MAX_OVERLAY_DISK)" "$([ "$disk_delta" -lt "$MAX_OVERLAY_DISK" ] && echo 1 || echo 0)"
else
    echo "SKIP  overlay render and disk: needs root" >> "$verdicts"
fi
verdict "cp -a / hardlink render = $r_hl (>= $MIN_HARDLINK_SPEEDUP)" "$(ge "$r_hl" "$MIN_HARDLINK_SPEEDUP" && echo 1 || echo 0)"
verdict "copy render / cp -a = $r_cy (<= $MAX_COPY_RATIO)" "$(le "$r_cy" "$MAX_COPY_RATIO" && echo 1 || echo 0)"
echo "targets:"
cat "$verdicts"

if [ "$fail" = 1 ] && [ "$check" = 1 ]; then
    exit 1
fi
exit 0
