#!/usr/bin/env bash
# Build the images the tests run on:
#   debian:bookworm                 pulled where a registry answers, else debootstrap + import
#   ec2ops-test/instance:bookworm   an "EC2-like" systemd host (sshd, sudo, python3)
# Docker's layer cache makes a second run a no-op while the Dockerfiles are unchanged.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"

BASE=debian:bookworm
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if timeout 60 docker pull -q "$BASE" >/dev/null 2>&1; then
    log "Pulled $BASE"
  else
    log "No registry answers: building $BASE offline with debootstrap"
    command -v debootstrap >/dev/null 2>&1 || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    dir=$(mktemp -d /var/tmp/ec2ops-rootfs.XXXXXX)
    trap 'rm -rf "$dir"' EXIT
    debootstrap --variant=minbase --include=ca-certificates bookworm "$dir" http://deb.debian.org/debian >"$dir.log" 2>&1 \
      || { tail -n 20 "$dir.log" >&2; die "debootstrap failed (log: $dir.log)"; }
    rm -f "$dir.log"
    # Match the official image: apt sources in place, no stale package lists.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
    tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$BASE" >/dev/null
    log "Imported $BASE"
  fi
fi

# Every directory under tests/images is one image, ec2ops-test/<dir>:bookworm.
for dir in "$ROOT"/tests/images/*/; do
  img=$(basename "$dir")
  log "Building ec2ops-test/$img:bookworm"
  DOCKER_BUILDKIT=0 docker build -q -t "ec2ops-test/$img:bookworm" "$dir" >/dev/null
done
