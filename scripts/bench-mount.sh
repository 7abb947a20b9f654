#!/usr/bin/env bash
# Mount benchmark: the same workloads on our FUSE mount (`blockfs mount`),
# on e2fsprogs' fuse2fs over an ext4 image of the same size, and on the
# kernel's own ext4 over a loop device (the ceiling; root only), in one
# run; also our mount without a journal (`mkfs-blockfs --no-journal`), to
# show what the journal costs. Prints a Markdown table of seconds, our
# speed-up over fuse2fs against the target for each workload, and our time
# as a multiple of ext4's.
#
#   scripts/bench-mount.sh [WORKDIR]       (default WORKDIR: target/bench)
#
# Environment:
#   FILESYSTEMS     the set to run (default "ours nojournal fuse2fs", plus
#                   "ext4" when run as root; ext4 is skipped with a note
#                   otherwise)
#   BASELINE_BIN=DIR adds another build of the tools (DIR holds its
#                   mkfs-blockfs and blockfs, e.g. an older commit's
#                   target/release), run in the same rounds, to measure what
#                   a change costs: the table gains its times and our change
#                   against it
#   BLOCKFS_MOUNT_OPTS   extra arguments for our `blockfs mount` (ours and
#                   nojournal), e.g. "--threads 2"
#   BASELINE_MOUNT_OPTS  the same for the baseline build (default none)
#   WORKLOADS       the workloads to run, in order (default all of them; a
#                   workload may depend on an earlier one: files_stat,
#                   files_list and files_delete on files_create, remove_tree
#                   on untar)
#   RUNS            rounds (default 3); the fastest time of each is kept
#   SIZE_MB         image size (default 3072); SEQ_MB sequential file
#                   size (default 1024)
#
# Before seq_read and random_read every filesystem is unmounted and mounted
# again and, when run as root, the page cache is dropped
# (echo 3 > /proc/sys/vm/drop_caches), so the reads come from the disk.
#
# Needs fuse3 and fuse2fs (apt-get install fuse3 fuse2fs), gcc, make,
# python3, and for ext4 e2fsprogs' mkfs.ext4 and util-linux's losetup.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
WORK=$(realpath -m "${1:-target/bench}")
SIZE_MB=${SIZE_MB:-3072}
SEQ_MB=${SEQ_MB:-1024}
mkdir -p "$WORK"

IS_ROOT=false
[ "$(id -u)" = 0 ] && IS_ROOT=true
NOTES=()
DEFAULT_FILESYSTEMS="ours nojournal fuse2fs"
if $IS_ROOT; then
    DEFAULT_FILESYSTEMS="$DEFAULT_FILESYSTEMS ext4"
else
    NOTES+=("ext4 (kernel, loop device) skipped: needs root.")
fi
FILESYSTEMS=${FILESYSTEMS:-$DEFAULT_FILESYSTEMS}
if [[ " $FILESYSTEMS " == *" ext4 "* ]] && ! $IS_ROOT; then
    echo "ext4 needs root (losetup, mount); leaving it out" >&2
    FILESYSTEMS=$(echo " $FILESYSTEMS " | sed 's/ ext4 / /')
fi
if [ -n "${BASELINE_BIN:-}" ]; then
    BASELINE_BIN=$(realpath "$BASELINE_BIN")
    FILESYSTEMS="$FILESYSTEMS baseline"
fi
read -ra OUR_MOUNT_OPTS <<< "${BLOCKFS_MOUNT_OPTS:-}"
read -ra BASE_MOUNT_OPTS <<< "${BASELINE_MOUNT_OPTS:-}"

needs=(fusermount3 gcc make python3 flock mountpoint findmnt)
[[ " $FILESYSTEMS " == *" fuse2fs "* ]] && needs+=(fuse2fs mke2fs)
[[ " $FILESYSTEMS " == *" ext4 "* ]] && needs+=(mkfs.ext4 losetup)
for tool in "${needs[@]}"; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool not found; install it with: apt-get install fuse3 fuse2fs e2fsprogs util-linux gcc make python3" >&2
        exit 1
    fi
done
cargo build --release --quiet --workspace
BIN=$PWD/target/release
MNT=$WORK/mnt
mkdir -p "$MNT"
if mountpoint -q "$MNT"; then
    echo "$MNT is already a mount point (a previous run's?); unmount it first" >&2
    exit 1
fi

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

DAEMON_PID=""    # the FUSE server of the current mount (run in the foreground, in the background)
LOOP_DEV=""      # the loop device under the ext4 image

# Waits (up to 30 s) for the mount to appear; fails if its server died.
await_mount() {
    local i
    for i in $(seq 300); do
        mountpoint -q "$MNT" && return 0
        if [ -n "$DAEMON_PID" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "the mount of $1 failed; its log: $WORK/$1.log" >&2
            cat "$WORK/$1.log" >&2 || true
            DAEMON_PID=""
            return 1
        fi
        sleep 0.1
    done
    echo "the mount of $1 did not appear within 30 s" >&2
    return 1
}

mount_fs() {
    if [ "$1" = ext4 ]; then
        mount "$LOOP_DEV" "$MNT"
        return
    fi
    case $1 in
        ours|nojournal) "$BIN/blockfs" mount -f ${OUR_MOUNT_OPTS[@]+"${OUR_MOUNT_OPTS[@]}"} "$WORK/$1.img" "$MNT" ;;
        baseline) "$BASELINE_BIN/blockfs" mount -f ${BASE_MOUNT_OPTS[@]+"${BASE_MOUNT_OPTS[@]}"} "$WORK/baseline.img" "$MNT" ;;
        fuse2fs) fuse2fs "$WORK/fuse2fs.img" "$MNT" -f -o fakeroot ;;
    esac </dev/null >"$WORK/$1.log" 2>&1 &
    DAEMON_PID=$!
    await_mount "$1"
}

# Unmounts whatever is on $MNT and waits for a FUSE server to finish
# writing its image; never fails (it also runs from the EXIT trap).
unmount() {
    local i fstype
    for i in $(seq 50); do
        mountpoint -q "$MNT" || break
        fstype=$(findmnt -n -o FSTYPE --mountpoint "$MNT" 2>/dev/null || true)
        case $fstype in
            fuse*) fusermount3 -u "$MNT" 2>/dev/null || { [ "$i" -ge 20 ] && fusermount3 -uz "$MNT" 2>/dev/null; } || true ;;
            *) umount "$MNT" 2>/dev/null || { [ "$i" -ge 20 ] && umount -l "$MNT" 2>/dev/null; } || true ;;
        esac
        mountpoint -q "$MNT" && sleep 0.2
    done
    if [ -n "$DAEMON_PID" ]; then
        for i in $(seq 600); do
            kill -0 "$DAEMON_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "FUSE server $DAEMON_PID still running 60 s after unmount; stopping it" >&2
            kill "$DAEMON_PID" 2>/dev/null || true
        fi
        wait "$DAEMON_PID" 2>/dev/null || true
        DAEMON_PID=""
    fi
}

detach_loop() {
    if [ -n "$LOOP_DEV" ]; then
        losetup -d "$LOOP_DEV" 2>/dev/null || echo "could not detach $LOOP_DEV" >&2
        LOOP_DEV=""
    fi
}

cleanup() {
    unmount
    detach_loop
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_image() {
    rm -f "$WORK/$1.img"
    case $1 in
        ours) "$BIN/mkfs-blockfs" -o "$WORK/ours.img" -s "$SIZE_MB" >/dev/null ;;
        baseline) "$BASELINE_BIN/mkfs-blockfs" -o "$WORK/baseline.img" -s "$SIZE_MB" >/dev/null ;;
        nojournal) "$BIN/mkfs-blockfs" -o "$WORK/nojournal.img" -s "$SIZE_MB" --no-journal >/dev/null ;;
        fuse2fs) truncate -s "${SIZE_MB}M" "$WORK/fuse2fs.img"; mke2fs -q -F -t ext4 "$WORK/fuse2fs.img" ;;
        ext4)
            truncate -s "${SIZE_MB}M" "$WORK/ext4.img"
            mkfs.ext4 -q -F "$WORK/ext4.img"
            LOOP_DEV=$(losetup -f --show "$WORK/ext4.img") ;;
    esac
}

remove_image() {
    [ "$1" = ext4 ] && detach_loop
    rm -f "$WORK/$1.img"
}

# Drops the page cache (root only), so reads come from the disk.
CACHE_DROPPED=unknown
drop_caches() {
    if $IS_ROOT && sync && { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
        [ "$CACHE_DROPPED" = no ] || CACHE_DROPPED=yes
    else
        CACHE_DROPPED=no
    fi
}

# Prints the wall seconds a command takes.
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

seq_write() { dd if=/dev/zero of="$MNT/big" bs=1M count="$SEQ_MB" conv=fsync status=none; }
seq_read() { dd if="$MNT/big" of=/dev/null bs=1M status=none; }
# The Python workloads time themselves and print the seconds: the
# interpreter's start-up (about 0.13 s on a small VM) is not filesystem
# work, and in files_list it was most of what the wall clock measured.
random_read() {
    python3 - "$MNT/big" <<'PY'
import os, random, sys, time
started = time.perf_counter()
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
rng = random.Random(7)
for _ in range(20000):
    os.pread(fd, 4096, rng.randrange(0, size // 4096) * 4096)
print("%.3f" % (time.perf_counter() - started))
PY
}
files() {
    python3 - "$MNT/files" "$1" <<'PY'
import os, sys, time
root, step = sys.argv[1], sys.argv[2]
names = [os.path.join(root, "f%05d" % i) for i in range(10000)]
started = time.perf_counter()
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
print("%.3f" % (time.perf_counter() - started))
PY
}
untar() { tar -xf "$SRC_TAR" -C "$MNT"; sync -f "$MNT"; }
remove_tree() { rm -rf "$MNT/include"; sync -f "$MNT"; }
# Two untars of the same archive at once, into two directories.
parallel_untar() {
    local first second status=0
    mkdir "$MNT/untar1" "$MNT/untar2"
    tar -xf "$SRC_TAR" -C "$MNT/untar1" &
    first=$!
    tar -xf "$SRC_TAR" -C "$MNT/untar2" &
    second=$!
    wait "$first" || status=$?
    wait "$second" || status=$?
    [ "$status" = 0 ] || { echo "parallel_untar: tar failed ($status)" >&2; return "$status"; }
    sync -f "$MNT"
}
c_build() { cp -r "$PROJECT" "$MNT/cproject" && make -s -C "$MNT/cproject" -j2 && "$MNT/cproject/prog" && sync -f "$MNT"; }

read -ra workloads <<< "${WORKLOADS:-seq_write seq_read random_read files_create files_stat files_list files_delete untar remove_tree parallel_untar c_build}"
# The speed-up over fuse2fs each workload should reach (issue 14).
declare -A target=(
    [seq_write]=2 [seq_read]=1 [random_read]=1 [files_create]=5 [files_stat]=5 [files_list]=1
    [files_delete]=5 [untar]=5 [remove_tree]=5 [parallel_untar]=5
)
declare -A result
# RUNS rounds (default 3), the filesystems interleaved within each round so
# that background noise hits them alike; the fastest time of each is kept.
for round in $(seq "${RUNS:-3}"); do
    for fs in $FILESYSTEMS; do
        echo "round $round: $fs" >&2
        make_image "$fs"
        mount_fs "$fs"
        for workload in "${workloads[@]}"; do
            case $workload in
                # Cold: from the disk, not the kernel's caches of the
                # mount or of the image file.
                seq_read|random_read) unmount; drop_caches; mount_fs "$fs" ;;
            esac
            case $workload in
                files_*) took=$(files "${workload#files_}") ;;
                random_read) took=$(random_read) ;;
                *) took=$(seconds "$workload") ;;
            esac
            best=${result[$fs.$workload]:-}
            if [ -z "$best" ] || awk -v t="$took" -v b="$best" 'BEGIN { exit !(t < b) }'; then
                result[$fs.$workload]=$took
            fi
        done
        unmount
        remove_image "$fs"
    done
done

# Missing filesystems print as n/a.
echo "| workload | blockfs s | fuse2fs s | ext4 s | × faster than fuse2fs | target | met | × ext4's time | blockfs without journal s | journal cost | baseline build s | change |"
echo "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
for workload in "${workloads[@]}"; do
    awk -v w="$workload" -v o="${result[ours.$workload]:-}" -v p="${result[fuse2fs.$workload]:-}" \
        -v k="${result[ext4.$workload]:-}" -v n="${result[nojournal.$workload]:-}" \
        -v b="${result[baseline.$workload]:-}" -v t="${target[$workload]:-}" '
        function secs(x) { return x == "" ? "n/a" : sprintf("%.3f", x) }
        function times(num, den) { return (num == "" || den == "" || den <= 0) ? "n/a" : sprintf("%.2f×", num / den) }
        function change(new, old) { return (new == "" || old == "" || old <= 0) ? "n/a" : sprintf("%+.0f%%", (new / old - 1) * 100) }
        BEGIN {
            speedup = times(p, o)
            goal = t == "" ? "–" : "≥ " t "×"
            if (t == "") met = "–"
            else if (speedup == "n/a") met = "n/a"
            else met = (p / o >= t) ? "yes" : "**no**"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, secs(o), secs(p), secs(k),
                speedup, goal, met, times(o, k), secs(n), change(o, n), secs(b), change(o, b)
        }'
done
echo
echo "seq_write/seq_read: ${SEQ_MB} MiB with dd bs=1M (write with conv=fsync); random_read: 20,000 4 KiB preads at random;"
echo "files_*: 10,000 files (list = 10 full listings); untar/remove_tree: /usr/include ($(du -sm "$SRC_TAR" | cut -f1) MB);"
echo "parallel_untar: two untars of it at once into two directories; c_build: 41 C files, make -j2."
echo "random_read and files_* are timed inside Python (its start-up excluded); the rest by the wall clock."
echo "Images of ${SIZE_MB} MiB; fastest of ${RUNS:-3} rounds; filesystems: $FILESYSTEMS."
[ -n "${BLOCKFS_MOUNT_OPTS:-}" ] && echo "blockfs mount options: $BLOCKFS_MOUNT_OPTS."
[ -n "${BASELINE_MOUNT_OPTS:-}" ] && echo "baseline mount options: $BASELINE_MOUNT_OPTS."
case $CACHE_DROPPED in
    yes) echo "seq_read and random_read: remounted and page cache dropped first (echo 3 > /proc/sys/vm/drop_caches)." ;;
    no) echo "seq_read and random_read: remounted first, but the page cache was NOT dropped (needs root), so they may be served from the image file's cached pages." ;;
esac
for note in ${NOTES[@]+"${NOTES[@]}"}; do echo "$note"; done
