#!/usr/bin/env bash
# Start the workers of the sail-gpu pool on this host: one control worker (sees every GPU; only on the
# host that runs the sail-loop flows) and one worker per GPU on the gpu queue, pinned with
# CUDA_VISIBLE_DEVICES and limited to one run. Works on hosts with GPUs or without.
# Usage: deployments/start-workers.sh [--gpu-only] [NUM_GPUS]
#   NUM_GPUS defaults to what nvidia-smi lists (0 without nvidia-smi: the control worker only);
#   --gpu-only starts no control worker (a second GPU host of the same pool).
# Logs go to logs/worker-*.log, the PIDs to logs/workers.pids; deployments/stop-workers.sh stops
# exactly those workers.
set -euo pipefail
# job control: each worker gets a process group of its own (the flow runs it starts join it) and keeps
# the default SIGINT, which a non-interactive shell would otherwise make its background jobs ignore;
# stop-workers.sh interrupts that group
set -m
POOL="${SAIL_POOL:-sail-gpu}"
CONTROL=1
if [[ "${1:-}" == "--gpu-only" ]]; then CONTROL=0; shift; fi
if [[ $# -gt 0 ]]; then
  GPUS="$1"
elif command -v nvidia-smi >/dev/null 2>&1; then
  GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
else
  GPUS=0
fi
[[ "$GPUS" =~ ^[0-9]+$ ]] || { echo "NUM_GPUS must be a number, got '$GPUS'" >&2; exit 2; }
HOST="$(hostname -s 2>/dev/null || hostname)"
export DO_NOT_TRACK="${DO_NOT_TRACK:-1}"  # the Prefect client's usage data stays here too
mkdir -p logs
PIDS=logs/workers.pids
if [[ "$CONTROL" == 1 ]]; then
  nohup prefect worker start --pool "$POOL" --work-queue control --name "$HOST-control" --limit 4 \
    > logs/worker-control.log 2>&1 &
  echo "$!" >> "$PIDS"
  echo "control worker: pid $!"
fi
for ((i = 0; i < GPUS; i++)); do
  CUDA_VISIBLE_DEVICES="$i" nohup prefect worker start --pool "$POOL" --work-queue gpu --name "$HOST-gpu$i" \
    --limit 1 > "logs/worker-gpu$i.log" 2>&1 &
  echo "$!" >> "$PIDS"
  echo "gpu$i worker: pid $!"
done
