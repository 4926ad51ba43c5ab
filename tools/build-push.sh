#!/usr/bin/env bash
# Build one image per service and push it, tagged with the release (the git sha): the
# build-and-push step of .github/workflows/build-push.yml, runnable the same way anywhere
# (a laptop, another CI, a test against a local registry).
#
#   tools/build-push.sh SERVICE [SERVICE...]
#   e.g. REGISTRY=123456789012.dkr.ecr.ap-northeast-2.amazonaws.com TAG=3f2c1ab \
#        tools/build-push.sh gateway-service user-service
#
# Environment:
#   REGISTRY        the registry host (required; in Actions, amazon-ecr-login's output)
#   TAG             the image tag = the release compose_app_release deploys (required; the git sha)
#   REPOSITORY_PREFIX  prepended to each service's repository name (default "ticketing/": the
#                   images inventories/shared/app.yml deploys, <registry>/ticketing/<service>:<tag>)
#   CONTEXT_ROOT    the directory holding one build context per service, <root>/<service>/Dockerfile
#                   (default "services")
#
# The login is the caller's (docker login / amazon-ecr-login): no credential passes through here.
# Every name is checked before anything is built; a service whose directory or Dockerfile is
# missing stops the run before the first build. An existing tag is pushed again with the same
# content only (ECR repositories with tag immutability refuse a different image under the same tag).
set -euo pipefail
# shellcheck source=tools/lib.sh disable=SC1091  # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || die "usage: tools/build-push.sh SERVICE [SERVICE...] (environment: REGISTRY, TAG, REPOSITORY_PREFIX, CONTEXT_ROOT)"
registry=${REGISTRY:-}
tag=${TAG:-}
prefix=${REPOSITORY_PREFIX-ticketing/}
context_root=${CONTEXT_ROOT:-services}

# The rules Docker applies to references (lower-case repository paths, tags of up to 128 characters)
# and compose_deploy's release id rule for the tag.
registry_re='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?$'
tag_re='^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'
path_re='^([a-z0-9]+([._-][a-z0-9]+)*/)*$'
name_re='^[a-z0-9]+([._-][a-z0-9]+)*$'

[[ "$registry" =~ $registry_re ]] || die "REGISTRY must be a registry host (e.g. 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com or localhost:5000), got '${registry}'"
[[ "$tag" =~ $tag_re ]] || die "TAG must be an image tag: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit (the git sha)"
[[ "$prefix" =~ $path_re ]] || die "REPOSITORY_PREFIX must be empty or lower-case path components each ending in '/' (e.g. 'ticketing/'), got '${prefix}'"
for service in "$@"; do
  [[ "$service" =~ $name_re ]] || die "service '${service}' is not a repository name: lower-case letters, digits, and '.', '_' or '-' between them"
  [ -f "$context_root/$service/Dockerfile" ] || die "no $context_root/$service/Dockerfile: each service is built from its own directory under CONTEXT_ROOT ($context_root)"
done

command -v docker >/dev/null 2>&1 || die "docker is not installed"

for service in "$@"; do
  image="$registry/$prefix$service:$tag"
  log "build $image from $context_root/$service"
  docker build --label "org.opencontainers.image.revision=$tag" -t "$image" "$context_root/$service"
done
for service in "$@"; do
  image="$registry/$prefix$service:$tag"
  log "push $image"
  docker push "$image"
done
log "pushed $# image(s) tagged $tag: deploy with compose_app_release=$tag"
