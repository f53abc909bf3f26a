#!/usr/bin/env bash
# Build a sandbox root filesystem (a minimal Debian with what a repo's tests and builds need, and the
# unprivileged user `sandbox`, uid 1000) into a folder with debootstrap. Used as-is by the namespace
# back-end (bubblewrap), and imported as the docker image by build-offline.sh.
#
# Usage: docker/build-rootfs.sh [DIR]   (default: $PRT_SANDBOX_ROOTFS or /var/lib/prt/rootfs)
#        PRT_DEBIAN_SUITE=trixie docker/build-rootfs.sh    another Debian release (another Python),
#                                     into <DIR>-trixie: QA uses it for sessions whose Python is nearer
# The rootfs is built again when the package list below changes (or with PRT_REBUILD_IMAGE=1).
set -euo pipefail
suite=${PRT_DEBIAN_SUITE:-bookworm}
default=${PRT_SANDBOX_ROOTFS:-/var/lib/prt/rootfs}
[ "$suite" = bookworm ] || default="$default-$suite"
dir=${1:-$default}
mirror=${PRT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What tests and builds commonly need: Python with its headers, venv and pip (environments are
# built in the sandbox), pytest, a C compiler and make (C extensions), git, patch, less (pagers),
# and Go (`go test`).
packages=python3,python-is-python3,python3-pytest,python3-venv,python3-pip,python3-dev,build-essential,git,patch,less,make,golang-go,ca-certificates

if [ -f "$dir/etc/prt-rootfs-id" ] && [ -z "${PRT_REBUILD_IMAGE:-}" ] \
   && [ "$(cat "$dir/etc/prt-rootfs-packages" 2>/dev/null)" = "$packages" ]; then
  echo "sandbox rootfs already at $dir ($(cat "$dir/etc/prt-rootfs-id"))"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }

tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"
trap 'rm -rf "$tmp"' EXIT
echo "debootstrap $suite into $tmp (a few minutes)"
debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" >/tmp/prt-debootstrap.log 2>&1 \
  || { tail -20 /tmp/prt-debootstrap.log >&2; exit 1; }

chroot "$tmp" /usr/sbin/groupadd --gid 1000 sandbox
chroot "$tmp" /usr/sbin/useradd --uid 1000 --gid 1000 --create-home --shell /bin/sh sandbox
mkdir -p "$tmp/work" && chown 1000:1000 "$tmp/work"
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp"/usr/share/doc "$tmp"/usr/share/man
echo "$packages" > "$tmp/etc/prt-rootfs-packages"
# Identity of this rootfs: the exact package set. QA ids include it, so a rebuilt rootfs re-verifies.
chroot "$tmp" dpkg-query -W -f '${Package}=${Version}\n' | sort | sha256sum | cut -c1-16 | sed 's/^/rootfs-/' > "$tmp/etc/prt-rootfs-id"

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "built sandbox rootfs at $dir ($(cat "$dir/etc/prt-rootfs-id"), Python $(readlink "$dir/usr/bin/python3"))"
