#!/usr/bin/env bash
# Installs the host tools into PREFIX/sbin (default /usr/local), with
# fsck-blockfs also as fsck.blockfs so `fsck -t blockfs IMAGE` finds it.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
cargo build --release --quiet -p blockfs-cli
install -d "$PREFIX/sbin"
for tool in mkfs-blockfs fsck-blockfs blockfs; do
    install -m 0755 "target/release/$tool" "$PREFIX/sbin/$tool"
done
ln -sf fsck-blockfs "$PREFIX/sbin/fsck.blockfs"
echo "installed mkfs-blockfs, fsck-blockfs (and fsck.blockfs), blockfs in $PREFIX/sbin"
