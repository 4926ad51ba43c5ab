#!/bin/sh
# As the official image: "-" arguments go to redis-server; the server runs as redis,
# listening on every interface of the container (its network is the boundary).
set -eu
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = redis-server ]; then
  shift
  chown redis:redis /data
  exec setpriv --reuid redis --regid redis --init-groups redis-server --bind 0.0.0.0 --protected-mode no --dir /data "$@"
fi
exec "$@"
