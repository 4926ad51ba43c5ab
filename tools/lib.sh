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
