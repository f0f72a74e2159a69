#!/usr/bin/env bash
# A self-hosted Prefect server on localhost:4200 (SQLite under $PREFECT_HOME, or the PostgreSQL database
# of SAIL_DATABASE_URL, e.g. postgresql+asyncpg://user:password@host:5432/prefect), in the foreground
# process's own session with its output in a file: `prefect server start --background` has been seen
# to die on a full stdout pipe (prefect PR #22588).
set -euo pipefail
# no usage data leaves the machine: the server's telemetry is off unless the caller turns it on
export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"
if [[ -n "${SAIL_DATABASE_URL:-}" ]]; then
  [[ "$SAIL_DATABASE_URL" == postgresql+asyncpg://* ]] || {
    echo "SAIL_DATABASE_URL must be a postgresql+asyncpg:// URL, got '${SAIL_DATABASE_URL%%://*}://...'" >&2; exit 2; }
  export PREFECT_SERVER_DATABASE_CONNECTION_URL="$SAIL_DATABASE_URL"
fi
mkdir -p logs
nohup prefect server start --host "${SAIL_SERVER_HOST:-127.0.0.1}" --port "${SAIL_SERVER_PORT:-4200}" \
  > logs/prefect-server.log 2>&1 &
echo "prefect server: pid $!  (UI at http://${SAIL_SERVER_HOST:-127.0.0.1}:${SAIL_SERVER_PORT:-4200})"
for _ in $(seq 1 60); do
  curl -sf "http://${SAIL_SERVER_HOST:-127.0.0.1}:${SAIL_SERVER_PORT:-4200}/api/health" >/dev/null && exit 0
  sleep 1
done
echo "server did not become healthy; see logs/prefect-server.log" >&2
exit 1
