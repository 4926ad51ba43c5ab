#!/usr/bin/env bash
# Regenerate requirements/constraints.txt (the lock) from requirements/*.txt.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${EC2OPS_PYTHON:-$VENV/bin/python}" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -r "$ROOT/requirements/controller.txt" -r "$ROOT/requirements/test.txt" >/dev/null
{
  echo '# Lock file: exact versions CI installs (Python 3.13). Regenerate with: make lock'
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v -e '^selinux==' -e '^setuptools=='
} > "$ROOT/requirements/constraints.txt"
log "requirements/constraints.txt updated"
