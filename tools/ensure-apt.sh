#!/usr/bin/env bash
# Debian packages the test suite uses on the controller: shellcheck (ansible-test sanity),
# python3-kafka (Debian's Kafka client, which the kafka role installs on hosts), nginx-light
# (the rolling compose_deploy tests and the benchmark run a private instance of it).
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
dpkg -s python3-kafka >/dev/null 2>&1 || missing+=(python3-kafka)
# Functional tests of the rolling strategy run a private nginx (never the system one).
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ ${#missing[@]} -eq 0 ] && exit 0
log "Installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
