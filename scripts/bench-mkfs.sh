#!/usr/bin/env bash
# Image-building benchmark: our mkfs-blockfs --populate against e2fsprogs'
# mke2fs -d (ext2 and ext4), and against merely reading the tree, on the
# same inputs in the same run. Prints a Markdown table (wall seconds, CPU
# seconds, peak RSS) with our ratio to each peer.
#
#   scripts/bench-mkfs.sh [WORKDIR]     (default WORKDIR: target/bench)
#
# Trees: the BusyBox root (scripts/build-busybox-rootfs.sh all), a copy of
# /usr/include, and a copy of /usr/share (tens of thousands of files).
# Each command runs RUNS times (default 3) and the fastest run is reported;
# the page cache is warm for all of them alike.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-target/bench}
RUNS=${RUNS:-3}
mkdir -p "$WORK"

command -v mke2fs >/dev/null || { echo "mke2fs not found: apt-get install e2fsprogs" >&2; exit 1; }
cargo build --release --quiet -p blockfs-cli
MKFS=$PWD/target/release/mkfs-blockfs
[ -d target/rootfs-busybox ] || scripts/build-busybox-rootfs.sh all >/dev/null

copy_tree() {
    [ -d "$2" ] || cp -a "$1" "$2"
}
copy_tree /usr/include "$WORK/include"
copy_tree /usr/share "$WORK/share"

# Runs a command RUNS times; prints "wall cpu rss_kib" of the fastest run.
# CPU time comes from GNU time in 10 ms steps.
measure() {
    local best="" stats
    stats=$(mktemp)
    for _ in $(seq "$RUNS"); do
        local line start end
        # Wall time from the nanosecond clock (GNU time's %e has 10 ms steps).
        start=$(date +%s%N)
        /usr/bin/time -o "$stats" -f '%U %S %M' "$@" >/dev/null 2>&1
        end=$(date +%s%N)
        line=$(tail -1 "$stats" | awk -v ns=$((end - start)) '{ printf "%.3f %.2f %d\n", ns / 1e9, $1 + $2, $3 }')
        if [ -z "$best" ] || awk -v a="$line" -v b="$best" 'BEGIN { split(a, x); split(b, y); exit !(x[1] < y[1]) }'; then
            best=$line
        fi
    done
    rm -f "$stats"
    echo "$best"
}

read_tree() { tar -cf - -C "$1" . | cat >/dev/null; }
export -f read_tree

ours() { rm -f "$2"; "$MKFS" --output "$2" --size "$3" --populate "$1"; }
ext() { rm -f "$2"; truncate -s "$3"M "$2"; mke2fs -q -F -t "$4" -d "$1" "$2"; }
export -f ours ext
export MKFS

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

echo "| tree | tool | wall s | CPU s | peak RSS MiB |"
echo "|---|---|---:|---:|---:|"
summary=()
for tree in target/rootfs-busybox "$WORK/include" "$WORK/share"; do
    name=$(basename "$tree")
    entries=$(find "$tree" | wc -l)
    megabytes=$(du -sm "$tree" | cut -f1)
    size=$((megabytes * 3 / 2 + 64))
    image="$WORK/$name.img"
    read_tree "$tree"    # warm the page cache for everyone
    declare -A result=()
    result[read]=$(measure bash -c "read_tree '$tree'")
    result[ours]=$(measure bash -c "ours '$tree' '$image' $size")
    result[ext2]=$(measure bash -c "ext '$tree' '$image' $size ext2")
    result[ext4]=$(measure bash -c "ext '$tree' '$image' $size ext4")
    rm -f "$image"
    label="$name ($entries entries, $megabytes MB)"
    for tool in read ours ext2 ext4; do
        read -r wall cpu rss <<<"${result[$tool]}"
        case $tool in
            read) what='`tar -cf - DIR | cat`' ;;
            ours) what='`mkfs-blockfs --populate`' ;;
            *) what="\`mke2fs -t $tool -d\`" ;;
        esac
        row "$label" "$what" "$wall" "$cpu" "$((rss / 1024))"
    done
    ours_wall=$(cut -d' ' -f1 <<<"${result[ours]}")
    ratios=""
    for peer in read ext2 ext4; do
        peer_wall=$(cut -d' ' -f1 <<<"${result[$peer]}")
        ratios+=$(awk -v o="$ours_wall" -v p="$peer_wall" -v n="$peer" 'BEGIN { printf "%s %.2fx, ", n, (p > 0 ? o / p : 0) }')
    done
    summary+=("$label: ours/peer wall time: ${ratios%, }")
    unset result
done
echo
for line in "${summary[@]}"; do echo "- $line"; done
