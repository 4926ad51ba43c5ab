#!/usr/bin/env bash
# Debian packages the test suite uses on the controller: shellcheck (ansible-test sanity),
# python3-kafka (Debian's Kafka client, which the kafka role installs on hosts), nginx-light
# (the compose_deploy benchmark; not started by the tests).
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
dpkg -s python3-kafka >/dev/null 2>&1 || missing+=(python3-kafka)
[ ${#missing[@]} -eq 0 ] && exit 0
log "Installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
