#!/usr/bin/env bash
# Stop the workers started by start-workers.sh (SIGINT lets each finish reporting; Prefect escalates).
pkill -INT -f "prefect worker start --pool ${SAIL_POOL:-sail-gpu}" || true
