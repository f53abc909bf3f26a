#!/usr/bin/env bash
# Prepare a Debian host (as root) for the sandbox back-ends: Docker with the gVisor runtime `runsc`
# registered, bubblewrap for the namespace back-end, debootstrap for the offline image build.
# Starts dockerd in the background when no engine answers. Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
for pair in docker.io:dockerd runsc:runsc bubblewrap:bwrap debootstrap:debootstrap; do
  command -v "${pair#*:}" >/dev/null 2>&1 || need+=("${pair%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Register gVisor as a runtime (ptrace platform: works without KVM; no network inside).
if [ ! -f /etc/docker/daemon.json ] || ! grep -q runsc /etc/docker/daemon.json; then
  mkdir -p /etc/docker
  [ -f /etc/docker/daemon.json ] && cp /etc/docker/daemon.json /etc/docker/daemon.json.prt-backup
  cat > /etc/docker/daemon.json <<'JSON'
{
  "runtimes": {
    "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace", "--network=none"]}
  }
}
JSON
  if docker info >/dev/null 2>&1; then  # a running daemon must reload to see the runtime
    pkill -HUP dockerd || true
    sleep 2
  fi
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  nohup dockerd >/var/log/prt-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/prt-dockerd.log >&2; echo "dockerd did not start" >&2; exit 1; }
fi
echo "docker $(docker version --format '{{.Server.Version}}') ready; runtimes: $(docker info --format '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')"
