#!/usr/bin/env bash
# Mount benchmark: the same workloads on our FUSE mount (`blockfs mount`)
# and on e2fsprogs' fuse2fs over an ext4 image of the same size, in one run;
# also our mount without a journal (`mkfs-blockfs --no-journal`), to show
# what the journal costs. Prints a Markdown table of seconds and ratios.
#
#   scripts/bench-mount.sh [WORKDIR]       (default WORKDIR: target/bench)
#
# BASELINE_BIN=DIR adds another build of the tools (DIR holds its
# mkfs-blockfs and blockfs, e.g. an older commit's target/release), run in
# the same rounds, to measure what a change costs: the table gains its
# times and our change against it. FILESYSTEMS limits the set (default
# "ours nojournal fuse2fs").
#
# Each workload runs RUNS times (default 3) and the fastest time is kept.
#
# Needs fuse3 and fuse2fs (apt-get install fuse3 fuse2fs) and gcc/make.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(realpath -m "${1:-target/bench}")
SIZE_MB=${SIZE_MB:-3072}
SEQ_MB=${SEQ_MB:-1024}
mkdir -p "$WORK"

for tool in fusermount3 gcc make python3 $([[ " ${FILESYSTEMS:-fuse2fs} " == *" fuse2fs "* ]] && echo fuse2fs); do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
cargo build --release --quiet --workspace
BIN=$PWD/target/release
MNT=$WORK/mnt
mkdir -p "$MNT"

# A real source tree to untar: the system headers.
SRC_TAR=$WORK/include.tar
[ -f "$SRC_TAR" ] || tar -cf "$SRC_TAR" -C /usr include

# A small C project: 40 translation units and a Makefile.
PROJECT=$WORK/cproject
if [ ! -d "$PROJECT" ]; then
    mkdir -p "$PROJECT"
    for i in $(seq 1 40); do
        cat > "$PROJECT/unit$i.c" <<C
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
int unit$i(int x) { char buf[64]; snprintf(buf, sizeof buf, "%d", x * $i); return (int)strlen(buf) + atoi(buf) % 7; }
C
    done
    {
        echo '#include <stdio.h>'
        for i in $(seq 1 40); do echo "int unit$i(int);"; done
        echo 'int main(void) { int s = 0;'
        for i in $(seq 1 40); do echo "s += unit$i($i);"; done
        echo 'printf("%d\n", s); return 0; }'
    } > "$PROJECT/main.c"
    printf 'OBJS := $(patsubst %%.c,%%.o,$(wildcard *.c))\nprog: $(OBJS)\n\t$(CC) -o $@ $^\n%%.o: %%.c\n\t$(CC) -O1 -c -o $@ $<\n' > "$PROJECT/Makefile"
fi

FILESYSTEMS=${FILESYSTEMS:-ours nojournal fuse2fs}
if [ -n "${BASELINE_BIN:-}" ]; then
    BASELINE_BIN=$(realpath "$BASELINE_BIN")
    FILESYSTEMS="$FILESYSTEMS baseline"
fi

unmount() { fusermount3 -u "$MNT" 2>/dev/null || true; sleep 0.2; }
trap unmount EXIT

mount_fs() {
    case $1 in
        ours|nojournal) "$BIN/blockfs" mount "$WORK/$1.img" "$MNT" ;;
        baseline) "$BASELINE_BIN/blockfs" mount "$WORK/baseline.img" "$MNT" ;;
        fuse2fs) fuse2fs -o fakeroot "$WORK/fuse2fs.img" "$MNT" >/dev/null ;;
    esac
}

make_image() {
    rm -f "$WORK/$1.img"
    case $1 in
        ours) "$BIN/mkfs-blockfs" -o "$WORK/ours.img" -s "$SIZE_MB" >/dev/null ;;
        baseline) "$BASELINE_BIN/mkfs-blockfs" -o "$WORK/baseline.img" -s "$SIZE_MB" >/dev/null ;;
        nojournal) "$BIN/mkfs-blockfs" -o "$WORK/nojournal.img" -s "$SIZE_MB" --no-journal >/dev/null ;;
        fuse2fs) truncate -s "${SIZE_MB}M" "$WORK/fuse2fs.img"; mke2fs -q -F -t ext4 "$WORK/fuse2fs.img" ;;
    esac
}

# Prints the wall seconds a command takes.
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
}

seq_write() { dd if=/dev/zero of="$MNT/big" bs=1M count="$SEQ_MB" conv=fsync status=none; }
seq_read() { dd if="$MNT/big" of=/dev/null bs=1M status=none; }
random_read() {
    python3 - "$MNT/big" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
rng = random.Random(7)
for _ in range(20000):
    os.pread(fd, 4096, rng.randrange(0, size // 4096) * 4096)
PY
}
files() {
    python3 - "$MNT/files" "$1" <<'PY'
import os, sys
root, step = sys.argv[1], sys.argv[2]
names = [os.path.join(root, "f%05d" % i) for i in range(10000)]
if step == "create":
    os.mkdir(root)
    for n in names:
        os.close(os.open(n, os.O_CREAT | os.O_WRONLY, 0o644))
elif step == "stat":
    for n in names:
        os.stat(n)
elif step == "list":
    for _ in range(10):
        assert len(os.listdir(root)) == 10000
elif step == "delete":
    for n in names:
        os.unlink(n)
PY
}
untar() { tar -xf "$SRC_TAR" -C "$MNT"; sync -f "$MNT"; }
remove_tree() { rm -rf "$MNT/include"; sync -f "$MNT"; }
c_build() { cp -r "$PROJECT" "$MNT/cproject" && make -s -C "$MNT/cproject" -j2 && "$MNT/cproject/prog" && sync -f "$MNT"; }

workloads=(seq_write seq_read random_read files_create files_stat files_list files_delete untar remove_tree c_build)
declare -A result
# RUNS rounds (default 3), the filesystems interleaved within each round so
# that background noise hits them alike; the fastest time of each is kept.
for _ in $(seq "${RUNS:-3}"); do
    for fs in $FILESYSTEMS; do
        make_image "$fs"
        mount_fs "$fs"
        for workload in "${workloads[@]}"; do
            case $workload in
                seq_read|random_read) unmount; mount_fs "$fs" ;;  # cold: from the image, not the page cache
            esac
            case $workload in
                files_*) took=$(seconds files "${workload#files_}") ;;
                *) took=$(seconds "$workload") ;;
            esac
            best=${result[$fs.$workload]:-}
            if [ -z "$best" ] || awk -v t="$took" -v b="$best" 'BEGIN { exit !(t < b) }'; then
                result[$fs.$workload]=$took
            fi
        done
        unmount
        rm -f "$WORK/$fs.img"
    done
done

echo "| workload | blockfs s | fuse2fs s | blockfs ÷ fuse2fs | blockfs without journal s | journal cost | baseline build s | change |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for workload in "${workloads[@]}"; do
    ours=${result[ours.$workload]:-0} peer=${result[fuse2fs.$workload]:-0}
    plain=${result[nojournal.$workload]:-0} base=${result[baseline.$workload]:-0}
    awk -v w="$workload" -v o="$ours" -v p="$peer" -v n="$plain" -v b="$base" 'BEGIN {
        printf "| %s | %.2f | %.2f | %.2f | %.2f | %+.0f%% | %.2f | %+.0f%% |\n", w, o, p, (p > 0 ? o / p : 0), n,
            (n > 0 ? (o / n - 1) * 100 : 0), b, (b > 0 ? (o / b - 1) * 100 : 0)
    }'
done
echo
echo "seq_write/seq_read: ${SEQ_MB} MiB with dd bs=1M (write with conv=fsync); random_read: 20,000 4 KiB preads;"
echo "files_*: 10,000 files (list = 10 full listings); untar/remove_tree: /usr/include ($(du -sm "$SRC_TAR" | cut -f1) MB); c_build: 41 C files, make -j2."
