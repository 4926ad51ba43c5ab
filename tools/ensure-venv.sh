#!/usr/bin/env bash
# Create or refresh the project venv (.venv) from requirements/*.txt and the
# constraints lock. Reused as is while those files are unchanged.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"

pick_python() {
  local v p
  for v in 3.13 3.12; do
    if command -v pyenv >/dev/null 2>&1; then
      p=$(pyenv root)/versions/$(pyenv versions --bare 2>/dev/null | grep -E "^${v//./\\.}(\.[0-9]+)?$" | sort -V | tail -1)/bin/python
      [ -x "$p" ] && { echo "$p"; return; }
    fi
    p=$(command -v "python$v" || true)
    [ -n "$p" ] && { echo "$p"; return; }
  done
  die "Python 3.12 or 3.13 is required (ansible-core 2.21); install one or set EC2OPS_PYTHON"
}

req=("$ROOT/requirements/controller.txt" "$ROOT/requirements/test.txt" "$ROOT/requirements/constraints.txt")
want=$(inputs_hash "${req[@]}")
if [ -f "$VENV/.inputs" ] && [ "$(cat "$VENV/.inputs")" = "$want" ]; then
  exit 0
fi
PY=${EC2OPS_PYTHON:-$(pick_python)}
log "Creating venv $VENV with $("$PY" --version)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
pip_log=$VENV.pip.log
if ! { "$VENV/bin/pip" install --upgrade pip &&
       "$VENV/bin/pip" install -c "$ROOT/requirements/constraints.txt" \
         -r "$ROOT/requirements/controller.txt" -r "$ROOT/requirements/test.txt"; } >"$pip_log" 2>&1; then
  tail -n 30 "$pip_log" >&2
  die "pip install failed (full log: $pip_log)"
fi
echo "$want" > "$VENV/.inputs"
