#!/usr/bin/env bash
# Starts the two cart instances of the sample (ports 9081 and 9082) against the session
# server, and waits until both answer. Where the server is, its CA and the carts' token come
# from what bin/start-sample-server.sh recorded, unless SESSION_SERVER (with SESSION_CA and
# SESSION_TOKEN_FILE) names another. Overrides: CART_PORT_1, CART_PORT_2, CART_HOST,
# SESSION_SERVER, SESSION_CA, SESSION_TOKEN_FILE, SAMPLE_RUN_DIR, SAMPLE_SECRETS_DIR,
# SAMPLE_PROFILE; CART_SESSIONS=local runs them unclustered.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mkdir -p "$run_dir"

build
if [[ -z ${SESSION_SERVER:-} && -f $server_env ]]; then
  set -a
  source "$server_env"
  set +a
fi
session_url="${SESSION_SERVER:-http://${session_listen/0.0.0.0/127.0.0.1}}"
client=(--session-server "$session_url")
health=(health --addr "$session_url" --timeout 1s)
if [[ -n ${SESSION_CA:-} ]]; then
  client+=(--session-ca "$SESSION_CA")
  health+=(--ca "$SESSION_CA")
fi
[[ -n ${SESSION_TOKEN_FILE:-} ]] && client+=(--session-token-file "$SESSION_TOKEN_FILE")
# The CSRF key both carts share: session-server setup made it (a cart makes it if missing).
mkdir -p "$secrets_dir"
client+=(--csrf-key-file "$secrets_dir/csrf.key")
if [[ ${CART_SESSIONS:-clustered} == clustered ]] &&
  ! "$bin_dir/session-server" "${health[@]}" >/dev/null 2>&1; then
  fail "the session server is not running at $session_url. Start it first with bin/start-sample-server.sh (or point SESSION_SERVER at yours)."
fi

# name port peer: one instance, configured by samples/cart/instances/NAME.env, then by the flags.
start_instance() {
  local name=$1 port=$2 peer=$3 pid
  local pidfile="$run_dir/cart-$name.pid" log="$run_dir/cart-$name.log"
  if pid=$(running_pid "$pidfile" "bin/cart\|/cart "); then
    say "Cart instance '$name' is already running (pid $pid) on port $port."
    return
  fi
  (
    set -a
    source "$root/samples/cart/instances/$name.env"
    set +a
    exec "$bin_dir/cart" --listen "$cart_host:$port" --public-port "$port" --peer-port "$peer" \
      --catalog "$root/samples/cart" "${client[@]}"
  ) >"$log" 2>&1 &
  echo $! >"$pidfile"
}

start_instance first "$cart_port_1" "$cart_port_2"
start_instance second "$cart_port_2" "$cart_port_1"

for name_port in "first:$cart_port_1" "second:$cart_port_2"; do
  name=${name_port%%:*} port=${name_port##*:}
  pid=$(<"$run_dir/cart-$name.pid")
  status=0
  wait_until "'$bin_dir/cart' check 'http://${cart_host/0.0.0.0/127.0.0.1}:$port/healthz' --timeout 500ms" "${WAIT_TENTHS:-150}" "$pid" || status=$?
  if ((status != 0)); then
    say "Cart instance '$name' did not start on port $port. Its log ($run_dir/cart-$name.log) ends with:" >&2
    tail -n 5 "$run_dir/cart-$name.log" >&2
    exit 1
  fi
done

say "The cart sample is running:"
say "  http://localhost:$cart_port_1/Cart"
say "  http://localhost:$cart_port_2/Cart"
say "Logs are in $run_dir. Stop everything with bin/stop-sample.sh."
