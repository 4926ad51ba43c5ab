#!/usr/bin/env bash
# The full test suite, from a fresh machine: installs and starts what it needs
# (Docker engine, Compose v2, test images, the venv), then runs each stage and
# prints how long each took. Usage: tools/test.sh [stage ...]
# Stages: setup lint sanity units pytest molecule (default: all, in that order).
# MOLECULE_SCENARIOS="docker host" limits the molecule stage.
set -uo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT" || exit 1

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(setup lint sanity units pytest molecule)

activate() {
  export PATH="$VENV/bin:$PATH"
  EC2OPS_COMPOSE_BINARY=$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
  export EC2OPS_COMPOSE_BINARY
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
}

stage_setup() {
  bash tools/ensure-apt.sh && bash tools/ensure-venv.sh && bash tools/ensure-docker.sh && bash tools/ensure-images.sh
}
stage_lint() {
  activate
  ruff check . && ruff format --check . && yamllint -s . && ansible-lint
}
stage_sanity() {
  activate
  bash tools/ansible-test.sh sanity --venv --python 3.13
}
stage_units() {
  activate
  bash tools/ansible-test.sh units --venv --python 3.13
}
stage_pytest() {
  activate
  # The local demo story (tests/functional/test_local_demo.py, several minutes, mostly waiting on
  # its instance) runs beside the other functional tests; its output follows theirs.
  local demo=tests/functional/test_local_demo.py out="$ROOT/tests/output/pytest" rc=0 rc_demo=0 pid
  mkdir -p "$out"
  pytest -p no:cacheprovider "$demo" >"$out/local-demo.log" 2>&1 &
  pid=$!
  pytest -p no:cacheprovider tests/functional --ignore="$demo" || rc=$?
  wait "$pid" || rc_demo=$?
  log "$demo (ran beside the tests above)"
  cat "$out/local-demo.log"
  [ "$rc" = 5 ] && { log "pytest collected no tests"; rc=0; }
  [ "$rc" = 0 ] && [ "$rc_demo" = 0 ]
}
stage_molecule() {
  activate
  local s rc=0
  for s in ${MOLECULE_SCENARIOS:-$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml | cut -d/ -f2 | sort)}; do
    log "molecule test -s $s"
    molecule test -s "$s" || { rc=1; log "molecule scenario $s FAILED"; }
  done
  return "$rc"
}

declare -a summary
passed=0 failed=0
for s in "${stages[@]}"; do
  declare -F "stage_$s" >/dev/null || die "unknown stage '$s' (setup lint sanity units pytest molecule)"
  log "stage: $s"
  t0=$(date +%s)
  if "stage_$s"; then r=ok; passed=$((passed + 1)); else r=FAILED; failed=$((failed + 1)); fi
  summary+=("$(printf '%-9s %-7s %5ss' "$s" "$r" "$(( $(date +%s) - t0 ))")")
  # Nothing later can run without the setup.
  [ "$s" = setup ] && [ "$r" = FAILED ] && break
done
echo
echo "== ec2ops.stack test summary =="
printf '%s\n' "${summary[@]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" = 0 ]
