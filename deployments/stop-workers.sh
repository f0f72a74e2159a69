#!/usr/bin/env bash
# Stop the workers start-workers.sh started on this host (the PIDs in logs/workers.pids), and no others.
# SIGTERM lets each worker shut down cleanly (SIGINT would not reach them: a non-interactive shell starts
# background jobs with SIGINT ignored); a worker still alive after 60 s gets SIGKILL.
set -uo pipefail
PIDS=logs/workers.pids
[[ -f "$PIDS" ]] || { echo "no $PIDS: no workers started from $(pwd)"; exit 0; }
mapfile -t pids < "$PIDS"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null && echo "stopping worker $pid"; done
for _ in $(seq 60); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [[ "$alive" == 0 ]] && break
  sleep 1
done
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null && echo "worker $pid did not stop: SIGKILL"; done
rm -f "$PIDS"
