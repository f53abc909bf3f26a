#!/usr/bin/env bash
# Regenerate the Prefect UI screenshots in docs/img/: a Prefect server with this repo's
# deployments, a worker, one completed process-inbox run over the examples, then headless
# Chromium (Debian's chromium package) on the UI. Usage: docs/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/prt-shots.XXXXXX)
export PREFECT_HOME=$work/prefect PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_API_URL=http://127.0.0.1:4287/api PRT_INBOX=$work/inbox PRT_LAKE=$work/lake
.venv/bin/prefect server start --host 127.0.0.1 --port 4287 >"$work/server.log" 2>&1 &
server=$!
worker=
trap 'kill $server ${worker:-} 2>/dev/null || true' EXIT
until curl -sf "$PREFECT_API_URL/health" >/dev/null; do sleep 0.5; done
.venv/bin/prt upload examples/traces --inbox "$PRT_INBOX" >/dev/null
make -s deploy >/dev/null
.venv/bin/prefect worker start --pool process >"$work/worker.log" 2>&1 &
worker=$!
.venv/bin/prefect deployment run process-inbox/process-inbox --watch >/dev/null
shot() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/chrome" --hide-scrollbars \
    --window-size=1500,950 --virtual-time-budget=15000 --screenshot="$1" "$2" 2>/dev/null
}
shot docs/img/prefect-deployments.png "http://127.0.0.1:4287/deployments"
run_id=$(.venv/bin/python -c "
import asyncio
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as c:
        runs = await c.read_flow_runs(limit=50)
        print(next(r.id for r in runs if r.state and r.state.is_completed() and r.name and not r.parent_task_run_id))
asyncio.run(main())")
shot docs/img/prefect-run.png "http://127.0.0.1:4287/runs/flow-run/$run_id"
echo "screenshots in docs/img/ (work folder $work)"
