#!/usr/bin/env bash
# Start the workers of the sail-gpu pool on this machine: one control worker (sees every GPU) and
# one worker per GPU on the gpu queue, pinned with CUDA_VISIBLE_DEVICES and limited to one run.
# Usage: deployments/start-workers.sh [NUM_GPUS]   (default: what nvidia-smi lists; 0 = CPU only)
# Logs go to logs/worker-*.log; stop them with deployments/stop-workers.sh.
set -euo pipefail
POOL="${SAIL_POOL:-sail-gpu}"
GPUS="${1:-$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)}"
export DO_NOT_TRACK="${DO_NOT_TRACK:-1}"  # the Prefect client's usage data stays here too
mkdir -p logs
nohup prefect worker start --pool "$POOL" --work-queue control --name control --limit 4 \
  > logs/worker-control.log 2>&1 &
echo "control worker: pid $!"
for ((i = 0; i < GPUS; i++)); do
  CUDA_VISIBLE_DEVICES="$i" nohup prefect worker start --pool "$POOL" --work-queue gpu --name "gpu$i" --limit 1 \
    > "logs/worker-gpu$i.log" 2>&1 &
  echo "gpu$i worker: pid $!"
done
