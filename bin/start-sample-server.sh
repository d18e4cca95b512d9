#!/usr/bin/env bash
# Starts the session server of the cart sample in the background and waits until it is
# SERVING (it loads the sessions kept in SAMPLE_DATA_DIR first). On the first run it makes the
# sample's credentials (an app token for the carts, an
# admin token, the carts' CSRF key) under SAMPLE_SECRETS_DIR, and with SAMPLE_TLS=1 a
# development CA and certificate, so the server requires the token (and TLS).
# Overrides: SESSION_LISTEN, SESSION_ADMIN_LISTEN, SAMPLE_RUN_DIR, SAMPLE_SECRETS_DIR,
# SAMPLE_DATA_DIR, SAMPLE_PROFILE, SAMPLE_TLS; any other session-server flag through its environment variable
# (session-server --help).
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
tls=()
# The carts' token, and one for the README's example app (its own app: its sessions are not
# the carts').
setup=(setup --dir "$secrets_dir" --app cart --app visits)
scheme=http
if [[ ${SAMPLE_TLS:-0} == 1 ]]; then
  setup+=(--tls)
  tls=(--tls-cert "$secrets_dir/server.pem" --tls-key "$secrets_dir/server.key")
  scheme=https
fi
"$bin_dir/session-server" "${setup[@]}" >"$run_dir/setup.log" 2>&1 ||
  fail "session-server setup could not make the sample's credentials: $(tail -n 1 "$run_dir/setup.log")"
# Where clients reach the server: a wildcard listen address is reached on loopback.
session_url="${SESSION_SERVER:-$scheme://${session_listen/0.0.0.0/127.0.0.1}}"
health=(health --addr "$session_url" --timeout 500ms)
[[ $scheme == https ]] && health+=(--ca "$secrets_dir/ca.pem")

"$bin_dir/session-server" --listen "$session_listen" --admin-listen "$session_admin_listen" \
  --auth-file "$secrets_dir/auth" --data-dir "$data_dir" "${tls[@]}" >"$log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"
{
  echo "SESSION_SERVER=$session_url"
  [[ $scheme == https ]] && echo "SESSION_CA=$secrets_dir/ca.pem"
  echo "SESSION_TOKEN_FILE=$secrets_dir/cart.token"
} >"$server_env"

status=0
wait_until "$(printf '%q ' "$bin_dir/session-server" "${health[@]}")" "${WAIT_TENTHS:-150}" "$pid" || status=$?
if ((status != 0)); then
  ((status == 2)) && say "The session server exited during start-up. Its log ($log) ends with:" >&2 ||
    say "The session server did not become SERVING within $((${WAIT_TENTHS:-150} / 10)) s. Its log ($log) ends with:" >&2
  tail -n 5 "$log" >&2
  kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  exit 1
fi

say "Session server is SERVING (pid $pid)."
say "  gRPC:           $session_url (app tokens in $secrets_dir/auth$([[ $scheme == https ]] && echo ", TLS"))"
say "  metrics/health: http://${session_admin_listen/0.0.0.0/127.0.0.1}/metrics"
say "  sessions kept:  $data_dir"
say "  log:            $log"
say "Next: bin/start-sample.sh"
