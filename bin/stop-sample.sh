#!/usr/bin/env bash
# Stops exactly what the start scripts started, by the pids they recorded.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stop() {
  local pidfile=$1 program=$2 label=$3 pid
  if ! pid=$(running_pid "$pidfile" "$program"); then
    return
  fi
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$label (pid $pid) did not stop within 10 s; killing it."
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "Stopped $label (pid $pid)."
  stopped=1
}

stopped=0
stop "$run_dir/cart-first.pid" "bin/cart\|/cart " "cart instance 'first'"
stop "$run_dir/cart-second.pid" "bin/cart\|/cart " "cart instance 'second'"
stop "$run_dir/session-server.pid" session-server "the session server"
((stopped)) || say "Nothing to stop: no sample process is running."
