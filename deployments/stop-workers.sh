#!/usr/bin/env bash
# Stop the workers start-workers.sh started on this host (the PIDs in logs/workers.pids), and no others.
# First the flow runs: each engine a worker started (a descendant with PREFECT__FLOW_RUN_ID in its
# environment) gets SIGTERM, on which Prefect's engine reports its run Crashed before it exits (a
# stopping worker would end it without a word, the run left Running in the UI); a rerun or
# `prefect flow-run retry` resumes it. Then the workers: each leads a process group of its own
# (start-workers.sh), which gets an interrupt (SIGINT: a Prefect worker ignores SIGTERM until a 60 s
# grace ends, while an interrupt stops an idle one in seconds); a second one after 10 s, SIGTERM after
# 20 s, SIGKILL after 40 s.
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

descendants() {
  local p
  for p in $(pgrep -P "$1" 2>/dev/null); do echo "$p"; descendants "$p"; done
}

engines() {  # the flow-run engines the workers started (Linux: their environment in /proc)
  local pid p
  for pid in "${pids[@]}"; do
    for p in $(descendants "$pid"); do
      { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -q '^PREFECT__FLOW_RUN_ID=' && echo "$p"
    done
  done
}

mapfile -t running < <(engines)
if [[ ${#running[@]} -gt 0 ]]; then
  echo "ending ${#running[@]} running flow run(s) (reported Crashed; rerun to resume): ${running[*]}"
  kill -TERM "${running[@]}" 2>/dev/null
  for _ in $(seq 150); do  # up to 30 s to report and exit
    mapfile -t running < <(engines)
    [[ ${#running[@]} -eq 0 ]] && break
    sleep 0.2
  done
fi

signal_all INT "stopping worker"
wait_until_stopped 10 || { signal_all INT; wait_until_stopped 10; } || { signal_all TERM; wait_until_stopped 20; } \
  || signal_all KILL "worker did not stop: SIGKILL"
rm -f "$PIDS"
