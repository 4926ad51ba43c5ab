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

stage_setup() {
  bash tools/ensure-apt.sh && bash tools/ensure-venv.sh && bash tools/ensure-docker.sh && bash tools/ensure-images.sh
}
stage_lint() {
  activate
  ruff check . && ruff format --check . && yamllint -s . && ansible-lint &&
    python tools/role_docs.py --check # the role READMEs' variable tables against the specs
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
  # Three streams side by side: the local demo story (tests/functional/test_local_demo.py, several
  # minutes, mostly waiting on its instance), the provisioning stories against their own moto server
  # (no Docker, mostly waiting on playbooks), and the other functional tests. Their outputs follow.
  local demo=tests/functional/test_local_demo.py out="$ROOT/tests/output/pytest" rc=0 rc_demo=0 rc_aws=0
  local aws=(tests/functional/ec2_provision tests/functional/test_ticketing_provision.py) pid pid_aws
  mkdir -p "$out"
  pytest -p no:cacheprovider "$demo" >"$out/local-demo.log" 2>&1 &
  pid=$!
  pytest -p no:cacheprovider "${aws[@]}" >"$out/provisioning.log" 2>&1 &
  pid_aws=$!
  pytest -p no:cacheprovider tests/functional --ignore="$demo" "${aws[@]/#/--ignore=}" || rc=$?
  wait "$pid_aws" || rc_aws=$?
  log "${aws[*]} (ran beside the tests above)"
  cat "$out/provisioning.log"
  wait "$pid" || rc_demo=$?
  log "$demo (ran beside the tests above)"
  cat "$out/local-demo.log"
  [ "$rc" = 5 ] && { log "pytest collected no tests"; rc=0; }
  [ "$rc" = 0 ] && [ "$rc_demo" = 0 ] && [ "$rc_aws" = 0 ]
}
# Minutes each scenario took in CI (unloaded machine), to balance the lanes; others count 5.
declare -A MOLECULE_MINUTES=([nginx]=8 [compose_app]=7 [judge0]=7 [host]=4 [kafka]=4 [docker]=3)
# The last task of an Ansible log that failed and was not ignored, with up to 25 lines of its message.
last_failure() { # log
  sed 's/\x1b\[[0-9;]*m//g; s/^ *│ \{0,1\}//' "$1" | awk '
    /^(TASK|RUNNING HANDLER) \[/ { if (block != "") keep = block; block = ""; collecting = 0; task = $0; next }
    /\.\.\.ignoring/ { block = ""; collecting = 0; next }
    /fatal: \[|failed: \[|FAILED! =>|^CRITICAL / && !collecting { block = task "\n" $0; collecting = 1; n = 1; next }
    collecting && n < 25 { block = block "\n" $0; n++ }
    END { if (block != "") keep = block; print keep }'
}
molecule_lane() { # lane-number net scenario... : run the scenarios one after another
  local lane=$1 net=$2 s rc=0
  shift 2
  for s in "$@"; do
    log "molecule test -s $s (lane $lane, network $net.0/24)"
    if EC2OPS_MOLECULE_NET=$net molecule test -s "$s" >"$MOLECULE_LOGS/$s.log" 2>&1; then
      echo "ok" >"$MOLECULE_LOGS/$s.result"
    else
      echo "FAILED" >"$MOLECULE_LOGS/$s.result"
      rc=1
    fi
    log "molecule scenario $s: $(cat "$MOLECULE_LOGS/$s.result")"
  done
  return "$rc"
}
stage_molecule() {
  activate
  # Scenarios run in EC2OPS_MOLECULE_JOBS lanes (default 2) at once, each lane on its own
  # network (172.30.250+lane.0/24); every scenario's containers and networks carry its own name.
  # Most of a scenario's time is spent waiting (apt, image loads, health checks), so two lanes
  # share the 2 cores well. Each scenario's output is printed once its lane is done.
  local jobs=${EC2OPS_MOLECULE_JOBS:-2} s i best rc=0
  local -a scenarios ordered lanes load pids
  read -r -a scenarios <<<"${MOLECULE_SCENARIOS:-$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml | cut -d/ -f2 | sort | tr '\n' ' ')}"
  MOLECULE_LOGS="$ROOT/tests/output/molecule"
  rm -rf "$MOLECULE_LOGS" && mkdir -p "$MOLECULE_LOGS"
  for ((i = 0; i < jobs; i++)); do lanes[i]="" load[i]=0; done
  # Longest first, each into the lane with the least work so far.
  read -r -a ordered <<<"$(for s in "${scenarios[@]}"; do echo "${MOLECULE_MINUTES[$s]:-5} $s"; done | sort -k1,1rn -k2 | cut -d' ' -f2 | tr '\n' ' ')"
  for s in "${ordered[@]}"; do
    best=0
    for ((i = 1; i < jobs; i++)); do [ "${load[i]}" -lt "${load[best]}" ] && best=$i; done
    lanes[best]+=" $s"
    load[best]=$((load[best] + ${MOLECULE_MINUTES[$s]:-5}))
  done
  for ((i = 0; i < jobs; i++)); do
    [ -n "${lanes[i]}" ] || continue
    # shellcheck disable=SC2086  # the lane's scenario names, one word each
    molecule_lane "$i" "172.30.$((250 + i))" ${lanes[i]} &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  for s in "${scenarios[@]}"; do
    log "molecule test -s $s: $(cat "$MOLECULE_LOGS/$s.result" 2>/dev/null || echo 'did not run')"
    cat "$MOLECULE_LOGS/$s.log" 2>/dev/null
  done
  for s in "${scenarios[@]}"; do printf '  molecule %-12s %s\n' "$s" "$(cat "$MOLECULE_LOGS/$s.result" 2>/dev/null || echo 'did not run')"; done
  # CI keeps only the end of the output: say there which task failed, with its message.
  for s in "${scenarios[@]}"; do
    [ "$(cat "$MOLECULE_LOGS/$s.result" 2>/dev/null)" = FAILED ] || continue
    { echo "molecule $s: the last failed task (full log above)"; last_failure "$MOLECULE_LOGS/$s.log"; } >>"$WHY_FAILED"
  done
  return "$rc"
}

declare -a summary
passed=0 failed=0
WHY_FAILED="$ROOT/tests/output/why-failed.txt"
mkdir -p "$ROOT/tests/output" && : >"$WHY_FAILED"
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
if [ -s "$WHY_FAILED" ]; then
  echo "== why =="
  cat "$WHY_FAILED"
fi
echo "== ec2ops.stack test summary =="
printf '%s\n' "${summary[@]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" = 0 ]
