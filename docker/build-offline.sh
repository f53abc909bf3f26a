#!/usr/bin/env bash
# Build the sandbox docker image without a registry: the rootfs of build-rootfs.sh, `docker import`ed.
# Usage: docker/build-offline.sh [TAG]   (default tag: $PRT_SANDBOX_IMAGE or prt-sandbox:1)
#        PRT_DEBIAN_SUITE=trixie docker/build-offline.sh     another base: <TAG>-trixie from <rootfs>-trixie
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=${PRT_DEBIAN_SUITE:-bookworm}
tag=${1:-${PRT_SANDBOX_IMAGE:-prt-sandbox:1}}
rootfs=${PRT_SANDBOX_ROOTFS:-/var/lib/prt/rootfs}
if [ "$suite" != bookworm ]; then
  tag="$tag-$suite"
  rootfs="$rootfs-$suite"
fi

"$here/build-rootfs.sh" "$rootfs"
if docker image inspect "$tag" >/dev/null 2>&1 && [ -z "${PRT_REBUILD_IMAGE:-}" ] \
   && [ "$(docker image inspect -f '{{ index .Config.Labels "prt.rootfs" }}' "$tag")" = "$(cat "$rootfs/etc/prt-rootfs-id")" ]; then
  echo "sandbox image $tag already built from this rootfs"
  exit 0
fi
tar -C "$rootfs" -c . | docker import \
  --change 'USER sandbox' --change 'WORKDIR /work' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/home/sandbox LANG=C.UTF-8' \
  --change "LABEL prt.rootfs=$(cat "$rootfs/etc/prt-rootfs-id")" \
  --change 'CMD ["/bin/sh"]' \
  - "$tag" >/dev/null
echo "built $tag from $rootfs"
