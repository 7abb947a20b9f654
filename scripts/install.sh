#!/usr/bin/env bash
# Installs the host tools as a filesystem's tools are installed:
#   PREFIX/sbin/          mkfs-blockfs, fsck-blockfs, blockfs (stripped), and
#                         mkfs.blockfs, fsck.blockfs, the names mkfs(8) and
#                         fsck(8) look for (`mkfs -t blockfs IMAGE`)
#   PREFIX/share/man/man8 a page for each tool and each blockfs subcommand
#   PREFIX/share/{bash-completion,zsh,fish}/...  shell completions
# PREFIX defaults to /usr/local. The tools are built in release mode,
# unless BLOCKFS_BIN_DIR names a directory already holding them (and
# blockfs-docs, which writes the pages and completions).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
bin_dir=${BLOCKFS_BIN_DIR:-}
if [[ -z $bin_dir ]]; then
    cargo build --release -p blockfs-cli
    bin_dir=target/release
fi
install -d "$PREFIX/sbin" "$PREFIX/share/man/man8"
for tool in mkfs-blockfs fsck-blockfs blockfs; do
    install -s -m 0755 "$bin_dir/$tool" "$PREFIX/sbin/$tool"
done
ln -sf mkfs-blockfs "$PREFIX/sbin/mkfs.blockfs"
ln -sf fsck-blockfs "$PREFIX/sbin/fsck.blockfs"
"$bin_dir/blockfs-docs" "$PREFIX/share/man" "$PREFIX/share"
echo "installed in $PREFIX: sbin/{mkfs-blockfs,mkfs.blockfs,fsck-blockfs,fsck.blockfs,blockfs}, man pages in share/man/man8, completions for bash, zsh and fish"
