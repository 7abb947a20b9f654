#!/usr/bin/env bash
# Resize benchmark: `blockfs resize` and e2fsprogs' `resize2fs` (ext4) on
# images of the same size and contents, in one run. Prints a Markdown
# table of wall seconds, CPU seconds and peak RSS, fastest of RUNS (3).
#
#   scripts/bench-resize.sh [WORKDIR]       (default WORKDIR: target/bench)
#
# TREE (default /usr/share) populates the second set of rows.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(realpath -m "${1:-target/bench}")
RUNS=${RUNS:-3}
TREE=${TREE:-/usr/share}
mkdir -p "$WORK"
for tool in mke2fs resize2fs; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
cargo build --release --quiet --workspace
BIN=$PWD/target/release

# best BASE LABEL TOOL CMD...: copies BASE to a scratch image RUNS times,
# runs CMD on it (the string IMG replaced by the scratch image), prints a row.
best() {
    local base=$1 label=$2 tool=$3; shift 3
    local best_wall= best_line=
    for _ in $(seq "$RUNS"); do
        cp --sparse=always "$base" "$WORK/scratch.img"
        sync
        local args=("${@//IMG/$WORK/scratch.img}")
        /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.txt" "${args[@]}" >/dev/null 2>"$WORK/err.txt" ||
            { cat "$WORK/err.txt" >&2; exit 1; }
        read -r wall user sys rss < "$WORK/time.txt"
        if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then
            best_wall=$wall
            best_line=$(awk -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" \
                'BEGIN{printf "%.3f | %.2f | %d", w, u + s, r / 1024}')
        fi
    done
    echo "| $label | \`$tool\` | $best_line |"
}

echo "| case | tool | wall s | CPU s | peak RSS MiB |"
echo "|---|---|---:|---:|---:|"

# Empty 256 MB image grown to 1 GiB: nothing but metadata to move.
"$BIN/mkfs-blockfs" -o "$WORK/empty.bfs" -s 256 >/dev/null
mke2fs -q -F -t ext4 "$WORK/empty.ext4" 256M >/dev/null
grow_ext4() { truncate -s "$2" "$1" && resize2fs -f "$1" "$2"; }
export -f grow_ext4
best "$WORK/empty.bfs" "empty, 256 MB → 1 GiB" "blockfs resize --size 1024" \
    "$BIN/blockfs" resize IMG --size 1024
best "$WORK/empty.ext4" "empty, 256 MB → 1 GiB" "resize2fs" bash -c 'grow_ext4 IMG 1G'

# A populated 1 GiB image.
entries=$(find "$TREE" | wc -l)
"$BIN/mkfs-blockfs" -o "$WORK/tree.bfs" -s 1024 -p "$TREE" >/dev/null
mke2fs -q -F -t ext4 -d "$TREE" "$WORK/tree.ext4" 1024M >/dev/null
name="$(basename "$TREE") ($entries entries)"
best "$WORK/tree.bfs" "$name, 1 → 2 GiB" "blockfs resize --size 2048" \
    "$BIN/blockfs" resize IMG --size 2048
best "$WORK/tree.ext4" "$name, 1 → 2 GiB" "resize2fs" bash -c 'grow_ext4 IMG 2G'
best "$WORK/tree.bfs" "$name, 1 GiB → 800 MB" "blockfs resize --size 800" \
    "$BIN/blockfs" resize IMG --size 800
best "$WORK/tree.ext4" "$name, 1 GiB → 800 MB" "resize2fs" resize2fs -f IMG 800M
best "$WORK/tree.bfs" "$name, 65536 → 200000 inodes" "blockfs resize --inodes 200000" \
    "$BIN/blockfs" resize IMG --inodes 200000
rm -f "$WORK/scratch.img" "$WORK/time.txt" "$WORK/err.txt"
