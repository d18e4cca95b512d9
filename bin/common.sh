# Shared by the sample scripts: paths, defaults and helpers. Sourced, not run.
# Every default can be overridden from the environment.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${SAMPLE_RUN_DIR:-$root/target/sample}"
# Cargo.toml's [profile.sample]: within a few percent of `release` when running.
profile="${SAMPLE_PROFILE:-sample}"
bin_dir="" # set by build

session_listen="${SESSION_LISTEN:-127.0.0.1:9510}"
session_admin_listen="${SESSION_ADMIN_LISTEN:-127.0.0.1:9540}"
# The tokens, the carts' CSRF key and (SAMPLE_TLS=1) certificates, made on the first run by
# `session-server setup` and kept (files mode 0600, the folder 0700).
secrets_dir="${SAMPLE_SECRETS_DIR:-$run_dir/secrets}"
# The durable store's data: the sessions, kept across restarts of the session server.
data_dir="${SAMPLE_DATA_DIR:-$run_dir/data}"
# What the session server's script tells the carts' script: where and how to reach it.
server_env="$run_dir/session-server.env"

cart_host="${CART_HOST:-127.0.0.1}"
cart_port_1="${CART_PORT_1:-9081}"
cart_port_2="${CART_PORT_2:-9082}"

say() { printf '%s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_cargo() {
  command -v cargo >/dev/null 2>&1 ||
    fail "cargo not found: install Rust from https://rustup.rs (or your package manager), then run this again"
}

# Builds session-server and cart in $profile, both in one cargo invocation whichever script
# asks (so nothing is built twice), and sets bin_dir. On Linux with glibc the binaries are
# static: the images of bin/build-images.sh hold these very files. Cargo decides what to
# rebuild, within seconds when nothing changed.
build() {
  need_cargo
  local host dir
  host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  [[ -n $host ]] || fail "rustc -vV did not name this machine's target: is the Rust toolchain installed whole?"
  dir=$profile
  [[ $profile == dev ]] && dir=debug
  bin_dir="$root/target/$host/$dir"
  if [[ -x $bin_dir/session-server && -x $bin_dir/cart ]]; then
    say "Building session-server and cart (profile $profile) if anything changed..."
  else
    say "Building session-server and cart (profile $profile) for the first time: about 4 minutes on 2 cores, cargo's progress below..."
  fi
  if [[ $host == *-linux-gnu ]]; then
    # Only the binaries: build scripts and proc macros (host code) cannot be static.
    local flags_var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$host")_RUSTFLAGS"
    export "$flags_var=-C target-feature=+crt-static"
  fi
  (cd "$root" && cargo build --profile "$profile" --target "$host" --package session-server --package cart) ||
    fail "build failed (cargo's message is above)"
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
