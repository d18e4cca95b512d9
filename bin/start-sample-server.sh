#!/usr/bin/env bash
# Starts the session server of the cart sample in the background and waits until it is
# SERVING. Overrides: SESSION_LISTEN, SESSION_ADMIN_LISTEN, SAMPLE_RUN_DIR, SAMPLE_PROFILE;
# any other session-server flag through its environment variable (session-server --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pidfile="$run_dir/session-server.pid"
log="$run_dir/session-server.log"
mkdir -p "$run_dir"

if pid=$(running_pid "$pidfile" session-server); then
  say "The session server is already running (pid $pid) on $session_listen. Stop it with bin/stop-sample.sh."
  exit 0
fi

build
"$bin_dir/session-server" --listen "$session_listen" --admin-listen "$session_admin_listen" >"$log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"

status=0
wait_until "'$bin_dir/session-server' health --addr '$session_url' --timeout 500ms" "${WAIT_TENTHS:-150}" "$pid" || status=$?
if ((status != 0)); then
  ((status == 2)) && say "The session server exited during start-up. Its log ($log) ends with:" >&2 ||
    say "The session server did not become SERVING within $((${WAIT_TENTHS:-150} / 10)) s. Its log ($log) ends with:" >&2
  tail -n 5 "$log" >&2
  kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  exit 1
fi

say "Session server is SERVING (pid $pid)."
say "  gRPC:           $session_url"
say "  metrics/health: http://${session_admin_listen/0.0.0.0/127.0.0.1}/metrics"
say "  log:            $log"
say "Next: bin/start-sample.sh"
