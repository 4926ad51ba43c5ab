#!/usr/bin/env bash
# Run a playbook over SSH the way the GitHub Actions deploy job does: the deploy key only in a
# private ssh-agent, the hosts' keys pinned from a known_hosts text, host key checking on.
#
#   tools/ssh-deploy.sh PLAYBOOK [ansible-playbook args...]
#   e.g. tools/ssh-deploy.sh deploy.yml -e compose_app_release=3f2c1ab
#
# Environment:
#   DEPLOY_SSH_KEY      the deploy user's private key, the whole file (required; a repository secret)
#   DEPLOY_KNOWN_HOSTS  known_hosts lines "host keytype base64key" for every host the run reaches
#                       (required; a repository variable). Never produced with ssh-keyscan: see
#                       docs/github-actions.md for getting them from the instance itself.
#   DEPLOY_INVENTORY    the inventory (default inventories/prod)
#
# The key goes from this process to ssh-agent through a pipe (never to disk, never in an
# argument list or the output). known_hosts, the agent's socket and the SSH control sockets live
# in a private 0700 directory that is removed, with the agent and any SSH master connection, when
# the script ends, whatever the outcome. The exit code is ansible-playbook's.
# DEPLOY_DEBUG_AGENT_PIDFILE (tests only): a file to write the started agent's pid to.
set -euo pipefail
# shellcheck source=tools/lib.sh disable=SC1091  # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"
umask 077

[ $# -ge 1 ] || die "usage: tools/ssh-deploy.sh PLAYBOOK [ansible-playbook args...] (environment: DEPLOY_SSH_KEY, DEPLOY_KNOWN_HOSTS, DEPLOY_INVENTORY)"
playbook=$1
shift
inventory=${DEPLOY_INVENTORY:-inventories/prod}

# --- check the input before anything is started ------------------------------------------------
# A CRLF pasted from Windows is the one harmless difference; strip it from both texts.
key=${DEPLOY_SSH_KEY:-}
key=${key//$'\r'/}
# From here on only this shell holds it (not exported): ssh-agent, ssh-add and Ansible never
# have it in their environment.
unset DEPLOY_SSH_KEY
known_hosts=${DEPLOY_KNOWN_HOSTS:-}
known_hosts=${known_hosts//$'\r'/}

KH_FIX="set the repository variable DEPLOY_KNOWN_HOSTS to the host's public host key lines, one per host, each 'host keytype base64key' (the host as the inventory connects to it, e.g. '203.0.113.10 ssh-ed25519 AAAAC3...'; read the key with ssh-keygen -lf / from the instance console output, see docs/github-actions.md); never use ssh-keyscan"

if [ -z "${known_hosts//[[:space:]]/}" ]; then
  die "DEPLOY_KNOWN_HOSTS is empty or not set, so no host could be verified: $KH_FIX"
fi
keytype_re='^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$'
base64_re='^[A-Za-z0-9+/]{16,}={0,2}$'
n=0 keys=0
# Line contents are never printed: a wrongly pasted private key must not reach the log either.
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  trimmed=${line#"${line%%[![:space:]]*}"}
  # Blank lines and comments are allowed (and skipped).
  case "$trimmed" in '' | '#'*) continue ;; esac
  read -r host keytype b64 _rest <<<"$line"
  if [[ "$host" =~ $keytype_re ]]; then
    die "DEPLOY_KNOWN_HOSTS line $n starts with a key type, not a host: put the host first (the name or address the inventory connects to, or '[host]:port'); $KH_FIX"
  fi
  if [[ "$host" == @* ]]; then
    die "DEPLOY_KNOWN_HOSTS line $n has a marker ($host); only plain 'host keytype base64key' lines are accepted: $KH_FIX"
  fi
  if [ -z "${b64:-}" ] || ! [[ "$keytype" =~ $keytype_re ]] || ! [[ "$b64" =~ $base64_re ]]; then
    die "DEPLOY_KNOWN_HOSTS line $n is not a known_hosts line 'host keytype base64key': $KH_FIX"
  fi
  keys=$((keys + 1))
done <<<"$known_hosts"
[ "$keys" -gt 0 ] || die "DEPLOY_KNOWN_HOSTS holds no host key line (only blanks or comments): $KH_FIX"

KEY_FIX="set the repository secret DEPLOY_SSH_KEY to the deploy user's private key, the whole file including its -----BEGIN ... PRIVATE KEY----- and -----END ... PRIVATE KEY----- lines, without a passphrase (its public half is host_deploy_user_authorized_keys)"
[ -n "${key//[[:space:]]/}" ] || die "DEPLOY_SSH_KEY is empty or not set: $KEY_FIX"
case "$key" in
  *"-----BEGIN "*"PRIVATE KEY-----"*"-----END "*"PRIVATE KEY-----"*) ;;
  *) die "DEPLOY_SSH_KEY is not a private key (no BEGIN/END PRIVATE KEY lines; a public key or a file name does not work): $KEY_FIX" ;;
esac

if command -v ansible-playbook >/dev/null 2>&1; then
  ansible_playbook=ansible-playbook
elif [ -x "$VENV/bin/ansible-playbook" ]; then
  ansible_playbook=$VENV/bin/ansible-playbook
else
  die "ansible-playbook is not installed: pip install -r requirements/controller.txt -c requirements/constraints.txt"
fi

# --- private state: known_hosts, agent socket, SSH control sockets ------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ssh-deploy.XXXXXXXX")
# A unix socket path is limited to 108 bytes: cp-%C adds 43 to the directory.
if [ ${#tmp} -gt 60 ]; then
  rmdir "$tmp"
  tmp=$(mktemp -d /tmp/ssh-deploy.XXXXXXXX)
fi
agent_pid=""

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local rc=$? sock
  trap - EXIT INT TERM
  # SSH master connections (ControlPersist) would outlive the run by 60 s: close them.
  for sock in "$tmp"/cp-*; do
    if [ -S "$sock" ]; then
      ssh -o ControlPath="$sock" -O exit deploy-host >/dev/null 2>&1 || true
    fi
  done
  if [ -n "$agent_pid" ]; then
    kill "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

chmod 0700 "$tmp"
printf '%s\n' "$known_hosts" >"$tmp/known_hosts"
chmod 0600 "$tmp/known_hosts"

# Our own agent, whatever SSH_AUTH_SOCK the caller had: only the deploy key is offered.
# It runs in the foreground (-D) as this script's child, so the cleanup can kill and reap it.
unset SSH_AUTH_SOCK SSH_AGENT_PID
ssh-agent -D -a "$tmp/agent.sock" >/dev/null &
agent_pid=$!
for _ in $(seq 1 50); do
  [ -S "$tmp/agent.sock" ] && break
  kill -0 "$agent_pid" 2>/dev/null || die "ssh-agent did not start"
  sleep 0.1
done
[ -S "$tmp/agent.sock" ] || die "ssh-agent did not open its socket within 5 s"
export SSH_AUTH_SOCK=$tmp/agent.sock SSH_AGENT_PID=$agent_pid
if [ -n "${DEPLOY_DEBUG_AGENT_PIDFILE:-}" ]; then
  printf '%s\n' "$agent_pid" >"$DEPLOY_DEBUG_AGENT_PIDFILE"
fi
# printf is a shell builtin: the key reaches ssh-add's stdin without an argument list.
if ! printf '%s\n' "$key" | SSH_ASKPASS_REQUIRE=never ssh-add -q - >/dev/null 2>"$tmp/ssh-add.err"; then
  die "ssh-add refused DEPLOY_SSH_KEY ($(head -c 200 "$tmp/ssh-add.err" | tr '\n' ' ')): $KEY_FIX"
fi
unset key

# --- the run -------------------------------------------------------------------------------------
# ssh takes the first value it is given for an option, and Ansible puts ANSIBLE_SSH_ARGS first on
# its command line: these win over an inventory's ansible_ssh_common_args. GlobalKnownHostsFile:
# only the pinned keys count, not whatever the runner image trusts.
export ANSIBLE_HOST_KEY_CHECKING=True
export ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s -o ControlPath=$tmp/cp-%C -o UserKnownHostsFile=$tmp/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ServerAliveInterval=30"
export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$ROOT/ansible.cfg}

cd "$ROOT"
# The arguments are not echoed: an -e could carry a value that has no place in a CI log.
log "ansible-playbook -i $inventory $playbook (+$# argument(s)); $keys pinned host key line(s), host key checking on"
rc=0
"$ansible_playbook" -i "$inventory" "$playbook" "$@" || rc=$?
exit "$rc"
