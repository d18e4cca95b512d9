#!/usr/bin/env bash
# Builds the container images of docker-compose.yml: compiles static binaries on this machine
# (no base image, no registry needed) and puts them in FROM-scratch images.
# Overrides: SESSION_IMAGE, CART_IMAGE.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

session_image="${SESSION_IMAGE:-clustered-sessions/session-server:latest}"
cart_image="${CART_IMAGE:-clustered-sessions/cart:latest}"
target=x86_64-unknown-linux-gnu

need_cargo
command -v docker >/dev/null 2>&1 || fail "docker not found: install Docker Engine (https://docs.docker.com/engine/install/)"
docker info >/dev/null 2>&1 || fail "the Docker engine is not reachable: start it (systemctl start docker) or check your permissions"

say "Compiling static binaries (release, $target)..."
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --target "$target" \
  --package session-server --package cart) || fail "build failed"
mkdir -p "$root/target/docker"
for b in session-server cart; do
  cp "$root/target/$target/release/$b" "$root/target/docker/$b"
  # No debug sections in the image: they are for profiling on the host.
  strip "$root/target/docker/$b" 2>/dev/null || true
done

# BuildKit needs the buildx plugin on recent CLIs; the classic builder needs nothing.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
for spec in "session-server:$session_image" "cart:$cart_image"; do
  stage=${spec%%:*} image=${spec#*:}
  say "Building image $image..."
  # Quiet on success; on failure, everything docker said.
  if ! out=$(docker build --target "$stage" --tag "$image" "$root" 2>&1); then
    printf '%s\n' "$out" >&2
    fail "docker build of $image failed"
  fi
done

say "Images:"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -F -e "$session_image" -e "$cart_image" || true
say "Next: docker compose up   (or docker-compose up)"
