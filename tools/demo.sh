#!/usr/bin/env bash
# The one-command local demo: the same deploy.yml as prod, over real SSH, against containers on
# this machine. Usage:
#   tools/demo.sh up [ansible-playbook args]   (make demo)       bring up and deploy
#   tools/demo.sh target                       only the target (instance, registry, moto, images)
#   tools/demo.sh env                          print the environment to run ansible-playbook by hand
#   tools/demo.sh down                         (make demo-down)  remove all of it
#
# What `up` builds (all on one Docker network, nothing reachable from outside this machine):
#   <name>-instance  an EC2-like Debian 12 host (systemd, sshd), user "admin" with a generated key
#                    and passwordless sudo (as on a Debian AMI); SSH and HTTP published on 127.0.0.1
#   <name>-registry  a private registry (the stand-in for ECR) holding the app images built here:
#                    the gateway (tests/images/demo-app) v1 and v2, Postgres and Redis (Debian's)
#   <name>-moto      a moto server (the stand-in for AWS Secrets Manager) holding the app's
#                    secrets, generated fresh for this demo
# then runs `ansible-playbook deploy.yml -i inventories/local` and prints the URL and the health
# answer. Settings (environment): EC2OPS_DEMO_NAME (ec2ops-demo), EC2OPS_DEMO_NET (172.30.240),
# EC2OPS_DEMO_SSH_PORT (2222), EC2OPS_DEMO_HTTP_PORT (8080), EC2OPS_DEMO_REGISTRY_PORT (5001),
# EC2OPS_DEMO_MOTO_PORT (5002), EC2OPS_DEMO_STATE (.demo: key, known_hosts, registry login).
set -euo pipefail
# shellcheck source=tools/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

NAME=${EC2OPS_DEMO_NAME:-ec2ops-demo}
NET=${EC2OPS_DEMO_NET:-172.30.240}
SSH_PORT=${EC2OPS_DEMO_SSH_PORT:-2222}
HTTP_PORT=${EC2OPS_DEMO_HTTP_PORT:-8080}
REGISTRY_PORT=${EC2OPS_DEMO_REGISTRY_PORT:-5001}
MOTO_PORT=${EC2OPS_DEMO_MOTO_PORT:-5002}
STATE=${EC2OPS_DEMO_STATE:-$ROOT/.demo}
INSTANCE=$NAME-instance REGISTRY=$NAME-registry MOTO=$NAME-moto
HOST_ALIAS=ticketing-local-app
SECRET_ID=ticketing/local/app
export EC2OPS_DEMO_NAME=$NAME EC2OPS_DEMO_NET=$NET EC2OPS_DEMO_SSH_PORT=$SSH_PORT \
  EC2OPS_DEMO_HTTP_PORT=$HTTP_PORT EC2OPS_DEMO_STATE=$STATE

running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

start_container() { # name ip [docker run args...] image [cmd...]
  local name=$1 ip=$2
  shift 2
  running "$name" && return 0
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --hostname "${name#"$NAME"-}" --network "$NAME" --ip "$NET.$ip" \
    --label ec2ops.demo="$NAME" "$@" >/dev/null
}

wait_for() { # seconds description command...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq 1 "$seconds"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "$what did not come up within ${seconds}s"
}

target() {
  log "Setting up this machine (venv, Docker engine, Compose v2, images)"
  # The SSH client (Ansible's connection) and curl, where a minimal machine lacks them.
  if ! command -v ssh-keygen >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client curl >/dev/null
  fi
  bash tools/ensure-venv.sh
  bash tools/ensure-docker.sh
  bash tools/ensure-images.sh
  activate

  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  [ -f "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "ec2ops-demo" -f "$STATE/id_ed25519"

  docker network inspect "$NAME" >/dev/null 2>&1 \
    || docker network create --subnet "$NET.0/24" --label ec2ops.demo="$NAME" "$NAME" >/dev/null
  log "Starting $REGISTRY, $MOTO and $INSTANCE on network $NAME ($NET.0/24)"
  start_container "$REGISTRY" 5 -p "127.0.0.1:$REGISTRY_PORT:5000" ec2ops-test/registry:bookworm
  start_container "$MOTO" 6 -p "127.0.0.1:$MOTO_PORT:5000" ec2ops-test/moto-server:bookworm
  # The options of .config/molecule/config.yml: systemd as PID 1 without --privileged.
  start_container "$INSTANCE" 10 --hostname "$HOST_ALIAS" \
    -p "127.0.0.1:$SSH_PORT:22" -p "127.0.0.1:$HTTP_PORT:80" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined \
    --security-opt apparmor=unconfined --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    -v /var/lib/docker --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    --stop-signal SIGRTMIN+3 ec2ops-test/instance:bookworm /lib/systemd/systemd

  wait_for 60 "sshd in $INSTANCE" docker exec "$INSTANCE" test -s /etc/ssh/ssh_host_ed25519_key.pub
  # As cloud-init does on a Debian AMI: the "admin" user with the key pair, passwordless sudo.
  docker exec -i "$INSTANCE" sh -c '
    id admin >/dev/null 2>&1 || useradd -m -s /bin/bash admin
    install -d -m 0700 -o admin -g admin /home/admin/.ssh
    cat > /home/admin/.ssh/authorized_keys && chown admin:admin /home/admin/.ssh/authorized_keys
    chmod 0600 /home/admin/.ssh/authorized_keys
    echo "admin ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-cloud-init-users
    chmod 0440 /etc/sudoers.d/90-cloud-init-users' <"$STATE/id_ed25519.pub"
  # Pinned host key, read from the instance itself (never ssh-keyscan over the network).
  printf '%s %s\n' "$HOST_ALIAS" "$(docker exec "$INSTANCE" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" \
    >"$STATE/known_hosts"
  # Behind a TLS-inspecting proxy this machine trusts extra CAs: the instance (which installs
  # boto3 from PyPI) trusts the same ones, for OpenSSL and for pip. None on an ordinary machine.
  local ca
  for ca in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$ca" ] || continue
    docker cp "$ca" "$INSTANCE:/usr/local/share/ca-certificates/"
    docker exec "$INSTANCE" sh -c 'update-ca-certificates >/dev/null 2>&1
      printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > /etc/pip.conf'
  done
  # Where an EC2 host gets credentials from its instance role; moto accepts any key.
  docker exec -i "$INSTANCE" sh -c 'install -d -m 0700 /root/.aws && cat > /root/.aws/credentials && chmod 0600 /root/.aws/credentials' <<'EOF'
[default]
# TEST-ONLY: the local demo's moto server accepts any credentials; a real host uses its instance role.
aws_access_key_id = ec2ops-demo-not-a-key
aws_secret_access_key = ec2ops-demo-not-a-secret
EOF

  log "Pushing the app images to $REGISTRY (gateway v1 and v2, Postgres, Redis)"
  local reg=127.0.0.1:$REGISTRY_PORT
  export DOCKER_CONFIG=$STATE/docker-config DOCKER_BUILDKIT=0
  wait_for 30 "$REGISTRY" sh -c "echo ec2ops-test-only | docker login -u ec2ops --password-stdin $reg"
  local v
  for v in v1 v2; do
    printf 'FROM ec2ops-test/demo-app:bookworm\nENV APP_VERSION=%s\n' "$v" \
      | docker build -q -t "$reg/ticketing/gateway-service:$v" - >/dev/null
    docker push -q "$reg/ticketing/gateway-service:$v" >/dev/null
  done
  for v in postgres redis; do
    docker tag "ec2ops-test/$v:bookworm" "$reg/ec2ops-test/$v:bookworm"
    docker push -q "$reg/ec2ops-test/$v:bookworm" >/dev/null
  done
  unset DOCKER_CONFIG

  log "Storing the app's secrets in $MOTO ($SECRET_ID)"
  wait_for 60 "$MOTO" curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/"
  "$VENV/bin/python" - "http://127.0.0.1:$MOTO_PORT" "$SECRET_ID" <<'EOF'
import json, secrets, sys
import boto3
sm = boto3.client("secretsmanager", endpoint_url=sys.argv[1], region_name="ap-northeast-2",
                  aws_access_key_id="ec2ops-demo-not-a-key", aws_secret_access_key="ec2ops-demo-not-a-secret")
try:
    sm.describe_secret(SecretId=sys.argv[2])
except sm.exceptions.ResourceNotFoundException:
    value = {"DB_USER": "ticketing", "DB_NAME": "ticketing", "DB_PASSWORD": secrets.token_urlsafe(24),
             "REDIS_PASSWORD": secrets.token_urlsafe(24), "JWT_SECRET": secrets.token_urlsafe(32)}
    sm.create_secret(Name=sys.argv[2], SecretString=json.dumps(value))
EOF
}

up() {
  local t0=$SECONDS
  target
  log "Running: ansible-playbook deploy.yml -i inventories/local $*"
  ansible-playbook deploy.yml -i inventories/local "$@"
  local health
  health=$(curl -fsS --max-time 5 "http://127.0.0.1:$HTTP_PORT/api/v1/health") \
    || die "the app does not answer on http://127.0.0.1:$HTTP_PORT/api/v1/health"
  cat <<EOF

The ticketing demo is up ($((SECONDS - t0)) s).
  Open:    http://127.0.0.1:$HTTP_PORT/
  Health:  $health
  Deploy v2 with a health-checked, rolling cut-over:
           eval "\$(tools/demo.sh env)"; ansible-playbook deploy.yml -i inventories/local -e compose_app_release=v2
  Roll back:  ansible-playbook rollback.yml -i inventories/local -e rollback_confirm=yes
  SSH in:     ssh -i $STATE/id_ed25519 -o UserKnownHostsFile=$STATE/known_hosts -o HostKeyAlias=$HOST_ALIAS -p $SSH_PORT admin@127.0.0.1
  Remove it:  make demo-down
EOF
}

print_env() {
  activate
  local k
  for k in PATH ANSIBLE_CONFIG EC2OPS_COMPOSE_BINARY EC2OPS_DEMO_NAME EC2OPS_DEMO_NET EC2OPS_DEMO_SSH_PORT \
    EC2OPS_DEMO_HTTP_PORT EC2OPS_DEMO_STATE; do
    printf 'export %s=%q\n' "$k" "${!k}"
  done
}

down() {
  local c
  for c in "$INSTANCE" "$REGISTRY" "$MOTO"; do
    docker rm -f -v "$c" >/dev/null 2>&1 && log "Removed $c"
  done
  docker network rm "$NAME" >/dev/null 2>&1 && log "Removed network $NAME"
  local reg=127.0.0.1:$REGISTRY_PORT
  docker image rm "$reg/ticketing/gateway-service:v1" "$reg/ticketing/gateway-service:v2" \
    "$reg/ec2ops-test/postgres:bookworm" "$reg/ec2ops-test/redis:bookworm" >/dev/null 2>&1 || true
  rm -rf "$STATE"
  log "The demo is gone"
}

cmd=${1:-up}
[ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  target) target ;;
  env) print_env ;;
  down) down ;;
  *) die "usage: tools/demo.sh up|target|env|down" ;;
esac
