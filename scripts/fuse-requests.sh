#!/usr/bin/env bash
# Counts the FUSE requests the kernel sends while a command runs, by
# opcode, from the kernel's fuse_request_send tracepoint (Linux 6.13 and
# later). Every FUSE mount counts, so run it with one mount busy. Needs
# root (tracefs).
#
#   scripts/fuse-requests.sh COMMAND [ARG...]
#
# Example, requests per file of an untar (docs/BENCHMARKS.md):
#   scripts/fuse-requests.sh tar -xf include.tar -C /mnt/blockfs
set -euo pipefail
(($#)) || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (tracefs)" >&2; exit 1; }
TRACING=/sys/kernel/tracing
[ -d "$TRACING/events" ] || mount -t tracefs nodev "$TRACING"
[ -d "$TRACING/events/fuse/fuse_request_send" ] ||
    { echo "$0: this kernel has no fuse tracepoints (Linux 6.13 or later has them)" >&2; exit 1; }
# A tracing instance of our own leaves the global trace alone.
INSTANCE=$TRACING/instances/fuse-requests-$$
mkdir "$INSTANCE"
trap 'rmdir "$INSTANCE"' EXIT
# Large enough that a long run loses no events (64 MiB per CPU).
echo 65536 > "$INSTANCE/buffer_size_kb"
echo 1 > "$INSTANCE/events/fuse/fuse_request_send/enable"
status=0
"$@" || status=$?
echo 0 > "$INSTANCE/events/fuse/fuse_request_send/enable"
grep -o '(FUSE_[A-Z_0-9]*)' "$INSTANCE/trace" | tr -d '()' | sort | uniq -c | sort -rn |
    awk '{ total += $1; printf "%9d %s\n", $1, $2 } END { printf "%9d total\n", total }'
overrun=$(awk '/^overrun:/ { sum += $2 } END { print sum + 0 }' "$INSTANCE"/per_cpu/cpu*/stats)
[ "$overrun" = 0 ] || echo "warning: $overrun events lost (trace buffer full)" >&2
exit "$status"
