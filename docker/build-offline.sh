#!/usr/bin/env bash
# Build the sandbox image without a registry: debootstrap a minimal Debian into a folder,
# add python3, pytest, git and patch, create the unprivileged `sandbox` user, then `docker import`.
# Usage: docker/build-offline.sh [TAG]   (default tag: prt-sandbox:1)
set -euo pipefail
tag=${1:-${PRT_SANDBOX_IMAGE:-prt-sandbox:1}}
suite=${PRT_DEBIAN_SUITE:-bookworm}
mirror=${PRT_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1 && [ -z "${PRT_REBUILD_IMAGE:-}" ]; then
  echo "sandbox image $tag already present (set PRT_REBUILD_IMAGE=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }

root=$(mktemp -d /tmp/prt-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite into $root (about a minute)"
debootstrap --variant=minbase --include=python3,python3-pytest,git,patch,ca-certificates \
  "$suite" "$root" "$mirror" >/tmp/prt-debootstrap.log 2>&1 \
  || { tail -20 /tmp/prt-debootstrap.log >&2; exit 1; }

# Same user as docker/Dockerfile: uid/gid 1000, home /home/sandbox, workspace /work.
chroot "$root" /usr/sbin/groupadd --gid 1000 sandbox
chroot "$root" /usr/sbin/useradd --uid 1000 --gid 1000 --create-home --shell /bin/sh sandbox
mkdir -p "$root/work" && chown 1000:1000 "$root/work"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man

tar -C "$root" -c . | docker import \
  --change 'USER sandbox' --change 'WORKDIR /work' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/home/sandbox LANG=C.UTF-8' \
  --change 'CMD ["/bin/sh"]' \
  - "$tag"
echo "built $tag"
