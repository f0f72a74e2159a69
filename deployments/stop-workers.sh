#!/usr/bin/env bash
# Stop the workers start-workers.sh started on this host (the PIDs in logs/workers.pids), and no others.
# Each worker leads a process group of its own (start-workers.sh), with the flow runs it started: the
# group gets an interrupt (SIGINT: a Prefect worker ignores SIGTERM until a 60 s grace ends, while an
# interrupt stops an idle one in seconds and marks a running flow run Crashed, to be resumed by a rerun);
# a second one after 10 s, SIGTERM after 20 s, SIGKILL after 40 s.
set -uo pipefail
PIDS=logs/workers.pids
[[ -f "$PIDS" ]] || { echo "no $PIDS: no workers started from $(pwd)"; exit 0; }
mapfile -t pids < "$PIDS"

alive() {
  local pid
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}

signal_all() {  # the worker's process group, or the worker alone if it leads none
  local pid
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    kill "-$1" -- "-$pid" 2>/dev/null || kill "-$1" "$pid" 2>/dev/null
    [[ -n "${2:-}" ]] && echo "$2 $pid"
  done
}

wait_until_stopped() {
  local _
  for _ in $(seq $(($1 * 5))); do alive || return 0; sleep 0.2; done
  return 1
}

signal_all INT "stopping worker"
wait_until_stopped 10 || { signal_all INT; wait_until_stopped 10; } || { signal_all TERM; wait_until_stopped 20; } \
  || signal_all KILL "worker did not stop: SIGKILL"
rm -f "$PIDS"
