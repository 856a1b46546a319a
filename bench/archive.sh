#!/usr/bin/env bash
# Archive-read benchmark: `acikit id` and `acikit validate` against the floor set by the
# system tools (`gzip -dc FILE | sha512sum`), measured in the same run, as ratios.
#
# Usage: bench/archive.sh [--check] [--runs N] [--dir DIR]
#   --check    exit non-zero when a target is missed (default: report only)
#   --runs N   timed runs per command (default 5, plus one warm-up)
#   --dir DIR  where bench/make-image.sh wrote the images (default <repo>/target/bench;
#              env ACIKIT_BENCH_DIR). Missing images are built by make-image.sh.
#   ACIKIT_BIN a prebuilt acikit binary (default: `cargo build --release -p acikit-cli`)
#   ACIKIT_BENCH_LOOP=1  time with the shell loop even when hyperfine is installed
#
# Targets, on the gzip image (debian-minbase.aci):
#   median(acikit id) / median(gzip -dc | sha512sum)        <= 1.10
#   median(acikit validate) / median(gzip -dc | sha512sum)  <= 1.10
#   peak RSS of `acikit id` and of `acikit validate`          < 64 MB
# The xz and zstd images are measured the same way, for information (no target).
# Times come from hyperfine when installed (apt-get install -y hyperfine), else from a loop;
# peak RSS from GNU time (`/usr/bin/time -f %M`, apt package `time`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/lib.sh"
bench_args 5 20 "$@"

MAX_RATIO=1.10
MAX_RSS_KB=$((64 * 1024))


[ -x /usr/bin/time ] || { log "GNU time missing: apt-get install -y time"; exit 1; }

bench_binary

image=$dir/debian-minbase.aci
if [ ! -s "$image" ] || [ ! -s "$dir/debian-minbase.aci.xz" ] || [ ! -s "$dir/debian-minbase.aci.zst" ]; then
    "$here/make-image.sh" "$dir" >/dev/null
fi
expected_id=$(cat "$dir/debian-minbase.id")

# Correctness first: a fast wrong answer is not a result.
for f in "$image" "$dir/debian-minbase.aci.xz" "$dir/debian-minbase.aci.zst" "$dir/debian-minbase.tar"; do
    got=$("$ACIKIT_BIN" id "$f" | tr -d '[:space:]')
    if [ "$got" != "$expected_id" ]; then
        log "FAIL: acikit id $f printed '$got', expected $expected_id"
        exit 1
    fi
    "$ACIKIT_BIN" validate "$f" >/dev/null || { log "FAIL: acikit validate $f exited non-zero"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/acikit-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# "median_wall mean_cpu" (seconds; cpu = user + system) of a shell command over $runs runs,
# after one warm-up
median_loop() {
    local cmd=$1 i t0 t1
    sh -c "$cmd" >/dev/null
    for ((i = 0; i < runs; i++)); do
        t0=$(date +%s.%N)
        /usr/bin/time -f '%U %S' -o "$work/cpu" sh -c "$cmd" >/dev/null
        t1=$(date +%s.%N)
        echo "$t0 $t1 $(tail -n 1 "$work/cpu")" | awk '{ printf "%.6f %.2f\n", $2 - $1, $3 + $4 }'
    done | sort -n | awk '{ w[NR] = $1; c += $2 }
        END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; print m, c / NR }'
}

# time_all NAME CMD... : prints "median_wall mean_cpu" (seconds) per command, in order
time_all() {
    local name=$1; shift
    if [ -z "${ACIKIT_BENCH_LOOP:-}" ] && command -v hyperfine >/dev/null; then
        hyperfine --style none --warmup 1 --runs "$runs" --export-csv "$work/$name.csv" "$@" >&2
        # command,mean,stddev,median,user,system,min,max (the command may hold commas)
        tail -n +2 "$work/$name.csv" | awk -F, '{ print $(NF - 4), $(NF - 3) + $(NF - 2) }'
    else
        local cmd
        for cmd in "$@"; do median_loop "$cmd"; done
    fi
}

# peak RSS in kB of a command (max over 3 runs)
peak_rss() {
    local i max=0 kb
    for i in 1 2 3; do
        /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null
        kb=$(tail -n 1 "$work/rss")
        [ "$kb" -gt "$max" ] && max=$kb
    done
    echo "$max"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

fail=0
verdict() { # label ok?
    if [ "$2" = 1 ]; then echo "PASS  $1"; else echo "FAIL  $1"; fail=1; fi
}

tar_mb=$(($(stat -c %s "$dir/debian-minbase.tar") / 1000000))
echo "acikit archive benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "load:    $(cut -d" " -f1-3 /proc/loadavg) (1, 5, 15 min averages at start; other work on the machine skews times)"
echo "binary:  $ACIKIT_BIN"
echo "image:   $dir/debian-minbase.* (tar $tar_mb MB), $runs runs each, median"
echo

results=$work/results
: > "$results"
for variant in gzip:aci xz:aci.xz zstd:aci.zst none:tar; do
    comp=${variant%%:*}
    f=$dir/debian-minbase.${variant#*:}
    case $comp in
        none) base="sha512sum '$f'" ;;
        *) base="$comp -dc '$f' | sha512sum" ;;
    esac
    log "timing $comp: $f"
    mapfile -t med < <(time_all "$comp" "$base" "'$ACIKIT_BIN' id '$f'" "'$ACIKIT_BIN' validate '$f'")
    rss_id=$(peak_rss "$ACIKIT_BIN" id "$f")
    rss_val=$(peak_rss "$ACIKIT_BIN" validate "$f")
    # comp size base_wall base_cpu id_wall id_cpu validate_wall validate_cpu rss_id rss_validate
    echo "$comp $(stat -c %s "$f") ${med[0]} ${med[1]} ${med[2]} $rss_id $rss_val" >> "$results"
done

echo "Times: median wall seconds; in brackets, mean CPU seconds (user + system, all threads)."
echo
printf '| input | size MB | baseline | baseline s | id s | validate s | id/base | validate/base | id RSS MB | validate RSS MB |\n'
printf '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
while read -r comp size b bc i ic v vc ri rv; do
    case $comp in none) bname='sha512sum' ;; *) bname="$comp -dc \| sha512sum" ;; esac
    printf '| %s | %.1f | `%s` | %.3f (%.2f) | %.3f (%.2f) | %.3f (%.2f) | %s | %s | %.1f | %.1f |\n' \
        "$comp" "$(awk -v s="$size" 'BEGIN { print s / 1e6 }')" "$bname" "$b" "$bc" "$i" "$ic" "$v" "$vc" \
        "$(ratio "$i" "$b")" "$(ratio "$v" "$b")" \
        "$(awk -v k="$ri" 'BEGIN { print k / 1024 }')" "$(awk -v k="$rv" 'BEGIN { print k / 1024 }')"
done < "$results"
echo

read -r _ _ b _ i _ v _ ri rv < <(grep '^gzip ' "$results")
r_id=$(ratio "$i" "$b")
r_val=$(ratio "$v" "$b")
echo "targets (gzip image):"
verdict "id/baseline = $r_id (<= $MAX_RATIO)" "$(le "$r_id" "$MAX_RATIO" && echo 1 || echo 0)"
verdict "validate/baseline = $r_val (<= $MAX_RATIO)" "$(le "$r_val" "$MAX_RATIO" && echo 1 || echo 0)"
verdict "id peak RSS = $((ri / 1024)) MB (< 64 MB)" "$([ "$ri" -lt "$MAX_RSS_KB" ] && echo 1 || echo 0)"
verdict "validate peak RSS = $((rv / 1024)) MB (< 64 MB)" "$([ "$rv" -lt "$MAX_RSS_KB" ] && echo 1 || echo 0)"

if [ "$fail" = 1 ] && [ "$check" = 1 ]; then
    exit 1
fi
exit 0
