#!/usr/bin/env bash
# Stops what scripts/start-runtimes.sh started (by the PIDs it recorded).
set -uo pipefail
STATE=${CNET_RUNTIME_STATE:-/run/cnet-runtimes}
[ -f "$STATE/started" ] || exit 0
# Newest first: dockerd before the containerd it uses.
tac "$STATE/started" | while read -r what pid; do
    [ -n "${pid:-}" ] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null && echo "stop-runtimes: $what ($pid) killed" || echo "stop-runtimes: $what ($pid) stopped"
done
: >"$STATE/started"
