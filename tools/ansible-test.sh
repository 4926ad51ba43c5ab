#!/usr/bin/env bash
# Run `ansible-test <args>` on this checkout, offline-capable.
# ansible-test needs the collection at .../ansible_collections/ec2ops/stack and rejects
# symlinks, so the checkout is bind-mounted there (copied where mounting is not allowed).
# Usage: tools/ansible-test.sh sanity --venv --python 3.13
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"

# The pip bootstrap script ansible-test would download (see tools/get_pip_offline.py).
at_dir=$("$VENV/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_ver=$(grep -oP "pip='\K[0-9.]+" "$at_dir/_internal/python_requirements.py" | head -1)
cache=~/.ansible/test/cache/get_pip_${pip_ver//./_}.py
mkdir -p "$(dirname "$cache")"
cp "$ROOT/tools/get_pip_offline.py" "$cache"

work=${EC2OPS_ANSIBLE_TEST_DIR:-/tmp/ec2ops-ansible-test}
dest=$work/ansible_collections/ec2ops/stack
mkdir -p "$dest"
mounted=0
if mountpoint -q "$dest"; then
  umount "$dest"
fi
if mount --bind "$ROOT" "$dest" 2>/dev/null; then
  mounted=1
  trap 'umount "$dest" 2>/dev/null || umount -l "$dest"' EXIT
else
  log "bind mount not allowed: copying the checkout to $dest"
  rm -rf "$dest" && mkdir -p "$dest"
  (cd "$ROOT" && tar -c --exclude=./.venv --exclude=./tests/output . ) | tar -C "$dest" -x
fi
# Dependency collections (galaxy.yml) next to this one, from the `ansible` package in the venv.
site=$("$VENV/bin/python" -c 'import ansible_collections, os; print(os.path.dirname(ansible_collections.__path__[0]))')
for dep in amazon/aws community/aws community/docker ansible/posix community/general community/crypto; do
  mkdir -p "$work/ansible_collections/${dep%/*}"
  ln -sfn "$site/ansible_collections/$dep" "$work/ansible_collections/$dep"
done
cd "$dest"
status=0
PATH="$VENV/bin:$PATH" "$VENV/bin/ansible-test" "$@" || status=$?
if [ "$mounted" = 0 ] && [ -d tests/output ]; then
  rm -rf "$ROOT/tests/output" && cp -r tests/output "$ROOT/tests/output"
fi
exit "$status"
