#!/usr/bin/env bash
# Builds the BusyBox root tree and the BlockFS image made from it (the
# seed's "Image Creation" workflow, on a host without a cross toolchain:
# BusyBox comes from Debian's busybox-static package).
#
#   scripts/build-busybox-rootfs.sh all      root tree in target/rootfs-busybox/
#   scripts/build-busybox-rootfs.sh blockfs  image target/rootfs-blockfs.img
#                                            (size: BLOCKFS_SIZE MB, default 256)
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=target/rootfs-busybox
IMAGE=target/rootfs-blockfs.img
SIZE=${BLOCKFS_SIZE:-256}

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

fetch_busybox() {
    local work
    work=$(mktemp -d)
    if ! (cd "$work" && apt-get download busybox-static >/dev/null 2>&1); then
        apt-get update -qq
        (cd "$work" && apt-get download busybox-static >/dev/null)
    fi
    dpkg-deb -x "$work"/busybox-static_*.deb "$work/pkg"
    install -m 0755 "$work/pkg/bin/busybox" "$1"
    rm -rf "$work"
}

build_tree() {
    rm -rf "$ROOT"
    mkdir -p "$ROOT"/{bin,sbin,etc,dev,proc,sys,root,home,var/log,usr/bin,usr/sbin,run}
    install -d -m 1777 "$ROOT/tmp"
    fetch_busybox "$ROOT/bin/busybox"
    # One symlink per applet, where BusyBox says it belongs.
    "$ROOT/bin/busybox" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] && continue
        mkdir -p "$ROOT/$(dirname "$applet")"
        ln -sf "$(realpath --relative-to="$ROOT/$(dirname "$applet")" "$ROOT/bin/busybox")" "$ROOT/$applet"
    done
    cat > "$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
    cat > "$ROOT/etc/group" <<'EOF'
root:x:0:
EOF
    echo veridian > "$ROOT/etc/hostname"
    # BusyBox init's built-in table also starts shells on tty2-4, which a
    # VM with only a serial console lacks (scripts/run-vm), and remounts
    # every filesystem read-only at shutdown, which run-vm's /init does
    # better (unmount, final commit).
    cat > "$ROOT/etc/inittab" <<'EOF'
::sysinit:/bin/hostname -F /etc/hostname
::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
EOF
    cat > "$ROOT/etc/profile" <<'EOF'
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PS1='root@veridian:\w# '
EOF
    echo "BusyBox root tree: $ROOT ($(find "$ROOT" | wc -l) entries)"
}

build_image() {
    [ -d "$ROOT" ] || { echo "no $ROOT: run '$0 all' first" >&2; exit 1; }
    cargo build --release --quiet -p blockfs-cli
    target/release/mkfs-blockfs --output "$IMAGE" --size "$SIZE" --populate "$ROOT"
}

case "${1:-}" in
    all) build_tree ;;
    blockfs) build_image ;;
    *) usage ;;
esac
