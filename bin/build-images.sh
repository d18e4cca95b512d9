#!/usr/bin/env bash
# Builds the container images of docker-compose.yml: compiles static binaries on this machine
# (no base image, no registry needed) and puts them in FROM-scratch images.
# Overrides: SESSION_IMAGE, CART_IMAGE, SAMPLE_PROFILE (release for the fully optimised build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

session_image="${SESSION_IMAGE:-clustered-sessions/session-server:latest}"
cart_image="${CART_IMAGE:-clustered-sessions/cart:latest}"

command -v docker >/dev/null 2>&1 || fail "docker not found: install Docker Engine (https://docs.docker.com/engine/install/)"
docker info >/dev/null 2>&1 || fail "the Docker engine is not reachable: start it (systemctl start docker) or check your permissions"

# The sample scripts' build (it checks for cargo): static binaries, shared with
# bin/start-sample*.sh.
build
[[ $bin_dir == *-linux-gnu/* ]] || fail "the images need static Linux binaries: build them on Linux with glibc (this machine builds for ${bin_dir%/*})"
mkdir -p "$root/target/docker"
for b in session-server cart; do
  cp "$bin_dir/$b" "$root/target/docker/$b"
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

say "Images (docs/docker.md quotes these sizes):"
for image in "$session_image" "$cart_image"; do
  bytes=$(docker image inspect --format '{{.Size}}' "$image")
  say "  $image  $(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }')"
done
say "Next: docker compose up   (Compose v2; with v1 it is docker-compose up, see README.md)"
