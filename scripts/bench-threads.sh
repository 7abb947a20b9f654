#!/usr/bin/env bash
# Library-level thread benchmark (no FUSE): operations per second with 1
# and 2 threads, each on independent files in its own directory of one
# mounted, file-backed image. See crates/blockfs/examples/bench_threads.rs.
#
#   scripts/bench-threads.sh [WORKDIR]       (default WORKDIR: target/bench)
#
# Runs BENCH_ROUNDS rounds (default 3), the thread counts interleaved, and
# ends with each count's median ratio to the first count's rate.
# BENCH_SECONDS (default 5) per thread count, BENCH_THREADS (default "1 2"),
# BENCH_NO_JOURNAL=1, BENCH_SIZE_MB (default 256), BENCH_WORKLOAD
# (metadata, the default, or uncached_read) and BENCH_IMAGES (shared, the
# default, or separate: an image per thread, the no-sharing ceiling) are
# passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(realpath -m "${1:-target/bench}")
mkdir -p "$WORK"
cargo build --release --quiet -p blockfs --example bench_threads
exec target/release/examples/bench_threads "$WORK"
