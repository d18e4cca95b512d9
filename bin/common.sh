# Shared by the sample scripts: paths, defaults and helpers. Sourced, not run.
# Every default can be overridden from the environment.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${SAMPLE_RUN_DIR:-$root/target/sample}"
profile="${SAMPLE_PROFILE:-release}"
bin_dir="$root/target/$profile"

session_listen="${SESSION_LISTEN:-127.0.0.1:9510}"
session_admin_listen="${SESSION_ADMIN_LISTEN:-127.0.0.1:9540}"
# Where clients reach the server: a wildcard listen address is reached on loopback.
session_url="${SESSION_SERVER:-http://${session_listen/0.0.0.0/127.0.0.1}}"

cart_host="${CART_HOST:-127.0.0.1}"
cart_port_1="${CART_PORT_1:-9081}"
cart_port_2="${CART_PORT_2:-9082}"

say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_cargo() {
  command -v cargo >/dev/null 2>&1 ||
    fail "cargo not found: install Rust from https://rustup.rs (or your package manager), then run this again"
}

# Builds the binaries in $profile if anything changed; cargo decides, quickly when up to date.
build() {
  need_cargo
  local flags=()
  [[ $profile == release ]] && flags+=(--release)
  say "Building $* ($profile)..."
  (cd "$root" && cargo build --quiet "${flags[@]}" "${@/#/--package=}") || fail "build failed"
}

# The pid in a pid file if that process is alive and is the program we started.
running_pid() {
  local pidfile=$1 program=$2 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$program" && { echo "$pid"; return 0; }
  rm -f "$pidfile" # stale: the process is gone
  return 1
}

# Polls a command until it succeeds, at most $2 tenths of a second, failing early if $3 dies.
wait_until() {
  local check=$1 tenths=$2 pid=$3
  for ((i = 0; i < tenths; i++)); do
    eval "$check" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 2
    sleep 0.1
  done
  return 1
}
