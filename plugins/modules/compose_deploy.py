#!/usr/bin/python
# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: compose_deploy
short_description: Health-checked Docker Compose releases with automatic rollback and history
version_added: 0.1.0
description:
  - Deploys a release of a Docker Compose v2 project on the host it runs on, one service at a time in
    dependency order, and waits for each service's health before going on.
  - Every image is pulled before anything stops, so a missing image or a failed registry login changes nothing.
  - C(recreate) services are replaced in place and health-checked. C(rolling) services (stateless HTTP behind the
    ec2ops.stack.nginx role) get a new container beside the old one; once it is healthy the nginx upstream switches
    to it, the old workers drain, and the old container stops in the background, so no request fails and the old
    container's stop timeout is not on the deploy's path. Compose files with C(container_name) or fixed host
    C(ports) work, because a generated override frees rolling services from both.
  - After cut-over every service is watched for O(verify_seconds). A failed health check, during the wait or the
    watch, restores the previous release exactly (pinned image digests, compose files and env files as they were)
    behind the same health gate, and the task fails saying what failed, what was done and what to do next.
  - Keeps O(keep_releases) good releases in C(<project_dir>/.ec2ops/history.json) with their files (0600) for
    rollback, and at most O(keep_failed) failed or interrupted attempts apart from them. Each attempt has its own
    record and directory (C(v1), then C(v1+2) ...), so re-deploying the release that runs never replaces its
    rollback point. Every deploy, rollback and repair is appended to C(<project_dir>/.ec2ops/audit.log).
  - The whole run holds a per-project lock, and the history is read under it. An attempt is journaled as in
    progress before the first change; a later run (deploy, rollback or a plain converge) that finds one left by a
    killed run brings every service back to the current release behind the health gate and says so.
  - Rolling services keep their scale (compose C(deploy.replicas) or C(scale)). N new containers start beside
    the old, all must be healthy, and the nginx upstream switches to all N at once.
  - Every value of the release's env files (and O(mask_values)) is masked in messages, log excerpts, health
    details, results and the audit log.
  - With O(state=rolled_back) it restores the previous release, or a named one, behind the same health gate.
  - Needs the docker CLI and the Compose v2 plugin on the host; no Python Docker SDK.
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  project_dir:
    description: Directory of the Compose project; compose and env files are named relative to it.
    type: path
    required: true
  project_name:
    description: Compose project name. Defaults to the base name of O(project_dir).
    type: str
  source_dir:
    description:
      - Directory the release's compose and env files are read from (a staging directory, such as the
        C(compose_app) role's C(.ec2ops/incoming)). They are snapshotted, checked, and installed into O(project_dir)
        under the lock once every image is pulled, so a refused or waiting deploy never changes the running
        project's files.
      - Defaults to O(project_dir) itself (files already in place; a refused deploy puts back the running
        release's files).
    type: path
  files:
    description: Compose files, relative to O(project_dir). Defaults to the first of C(compose.yaml), C(compose.yml),
      C(docker-compose.yaml), C(docker-compose.yml) found.
    type: list
    elements: str
    default: []
  assets:
    description:
      - Other files of the release, relative to O(project_dir), that compose does not read itself - key files the
        services mount (C(keys/jwt_private.pem)). Read from O(source_dir), snapshotted with the release (0600),
        installed with it (mode and owner kept) and restored by a rollback, like the env files.
    type: list
    elements: str
    default: []
  contents:
    description:
      - Files of the release given as text, by name (each also listed in O(files) or O(env_files)), such as templates
        rendered on the controller. They are used instead of the files of the same name in O(source_dir), so the
        release needs no separate upload. Not logged (the text may hold values that are secrets).
      - A file new in O(project_dir) gets the project directory's owner and group, mode C(0640) (C(0600) for an env
        file).
    type: dict
    default: {}
  env_files:
    description:
      - Env files (relative to O(project_dir)) used for interpolation and snapshotted with the release, so a rollback
        restores the environment that release ran with. Defaults to C(.env) when it exists.
      - Files named in services' C(env_file) should be listed here too so they are restored on rollback.
    type: list
    elements: str
  profiles:
    description: Compose profiles to enable.
    type: list
    elements: str
    default: []
  release:
    description:
      - Release id (a git sha or tag). Defaults to a digest of the images and files, so deploying the same thing
        twice changes nothing.
      - With O(state=rolled_back), V(previous) or the id of a kept release.
    type: str
  images:
    description: "Image per service for this release, e.g. C({api: registry.example.com/api:v42})."
    type: dict
    default: {}
  services:
    description:
      - Per-service deploy options. Services not named here are recreated and judged by their container state
        (and container healthcheck, if the image or compose file defines one).
      - Each entry is checked like module options before anything starts (types, choices, lower bounds); an error
        names the option, for example C(services.api.drain_timeout).
      - C(strategy) is V(recreate) (default) or V(rolling). Rolling needs C(nginx_upstream) (the upstream name in the
        nginx role) and C(port) (the container port), and may set C(drain_timeout) (whole seconds, default 30) and
        C(stop_timeout) (whole seconds the old containers get to stop, default 10).
      - C(health) has C(container) (bool, default true, require the container healthcheck to be healthy where there
        is one), C(url) (HTTP check; C({ip}) is replaced by the container's address, e.g.
        C(http://{ip}:8080/api/v1/health)), C(status) (default 200), C(body) (regular expression), C(interval)
        (seconds, default 1), C(timeout) (default 2), C(retries) (consecutive failures that make a watched service
        unhealthy, default 3), C(start_period) (seconds before the first check, default 0), C(healthy_threshold)
        (consecutive passes needed, default 1) and C(headers) (header name to value, sent with the HTTP check).
      - A C(headers) value may name variables of the project's env files (O(env_files)) as C(${NAME}), for example
        the value C(${AUTHN_TOKEN}) for the header C(X-Auth-Token). They are read on the host at each check, from
        the files of the release being checked, so a token never is a module argument; its value is removed from
        every health detail and error. Put secrets only as such references, never as literal values (this option
        is not C(no_log)).
      - C(error_watch) (rolling services) watches real traffic during the verify window as well as the health check.
        C(access_log) is the nginx site's JSON access log (the nginx role writes C(/var/log/nginx/<site>.access.log) in
        its C(ec2ops_json) format). The new containers' answers logged after the switch are counted, and when at least
        C(min_requests) (default 50) were answered and more than C(max_percent) (default 2) percent of them were 5xx,
        the release is judged bad and rolled back, whatever its health endpoint says. With fewer requests it is not
        judged; the summary says what it saw.
      - C(release_command) (argv list, for example C([python, manage.py, migrate])) is the service's release phase.
        After every image is pulled and before anything the app runs on changes, it runs once per deploy attempt in a
        one-off container of the service (C(docker compose run --no-deps)), from the release's pinned image, compose
        files and env files, on the project's network. A non-zero exit or a run longer than C(release_timeout) (seconds,
        default 600) ends the deploy with the running release untouched. Its output (last 200 lines, secrets masked)
        goes to the audit log; the release history records that it ran. Relative paths in the compose files resolve
        against the release's snapshot directory, as they do for the configuration check.
    type: dict
    default: {}
  wait_timeout:
    description: Seconds a release gets to become healthy (all services together) before it is rolled back.
    type: int
    default: 120
  verify_seconds:
    description: Seconds to keep checking every service after cut-over; a failure then rolls back too. 0 turns it off.
    type: int
    default: 30
  keep_releases:
    description: Good (deployed) releases kept in the history with their files and images; older ones are dropped
      with their directories. The current release is always kept.
    type: int
    default: 5
  keep_failed:
    description: Failed or interrupted attempts kept in the history (with their files, for inspection), apart from
      O(keep_releases).
    type: int
    default: 5
  pull:
    description:
      - V(always) pulls every image; V(missing) pulls images not on the host; V(never) pulls nothing (images must
        be there).
    type: str
    choices: [always, missing, never]
    default: always
  prune_images:
    description: After a successful deploy, remove this project's images that no kept release needs.
    type: bool
    default: true
  lock_timeout:
    description: Seconds to wait for another deploy of the same project to finish before failing, naming it.
    type: int
    default: 0
  secret_versions:
    description: What ec2ops.stack.secrets_dotenv returned in RV(ec2ops.stack.secrets_dotenv#module:secrets), kept
      with the release so the history says which secret versions it ran with.
    type: list
    elements: dict
    default: []
  mask_values:
    description: More values to mask in everything the module reports (the registry password, for example), besides
      the values of the env files, which are always masked.
    type: list
    elements: str
    default: []
  restart_policy:
    description: Restart policy the generated override gives services whose compose definition sets none, so the
      app comes back after a reboot. An empty string leaves them without one.
    type: str
    default: unless-stopped
  nginx_switch_command:
    description: The upstream switch command the ec2ops.stack.nginx role installs.
    type: path
    default: /usr/local/sbin/ec2ops-nginx-upstream
  failure_log_lines:
    description: Log lines of a failed container shown in the failure message.
    type: int
    default: 10
  deployed_by:
    description: Who deploys, for the history and audit log. Defaults to C(SUDO_USER) or the user running the module.
    type: str
  rollback_env:
    description:
      - The env files a rollback (O(state=rolled_back)) runs with. V(release) restores the release exactly, with the
        env files it ran with. V(current) takes its images (pinned) and compose files with the current release's env
        files, and deploys them as a new attempt of that release through the whole health gate - for a rollback
        after a secret rotation revoked the credentials the older release ran with.
    type: str
    choices: [release, current]
    default: release
  schema_rollback:
    description:
      - What a rollback does when a later attempt ran a C(release_command) (the database schema may be ahead of the
        release rolled back to). V(warn) rolls back and warns; V(refuse) changes nothing and says to roll the schema
        back first, then run the rollback with V(warn).
      - An automatic rollback after a failed deploy always goes ahead, with a warning, since the earlier release must
        serve again.
    type: str
    choices: [warn, refuse]
    default: warn
  state:
    description:
      - V(deployed) deploys O(release); V(rolled_back) restores the release named by O(release).
      - V(locked) holds every deploy and rollback of the project (they fail naming who holds it and O(lock_message))
        until V(unlocked) releases it; neither touches the running app.
      - V(ran) runs O(run_command) once in a one-off container of O(run_service), from the current release's pinned
        image, compose files and env files, under the deploy lock; its output (masked) is returned and kept in the
        audit log; a non-zero exit fails the task.
    type: str
    choices: [deployed, rolled_back, locked, unlocked, ran]
    default: deployed
  lock_message:
    description: With O(state=locked), why deploys are held (shown to whoever tries to deploy).
    type: str
    default: ""
  run_service:
    description: With O(state=ran), the service to run the command in.
    type: str
  run_command:
    description: With O(state=ran), the command's argv (no shell), for example C([python, manage.py, showmigrations]).
    type: list
    elements: str
  run_timeout:
    description: With O(state=ran), seconds the command may run before it is stopped.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    description: Reports whether the release would change, and the images before and after, without touching the host.
  diff_mode:
    support: full
    description: The release and images before and after.
  idempotent:
    support: full
    description: Deploying the release that is already running and healthy reports no change.
notes:
  - Apply it to the host that runs the project (it calls the local docker CLI), with C(become) where needed.
  - The rolling strategy needs the nginx role on the same host. The generated override removes C(container_name) and
    host C(ports) from a rolling service, so nginx reaches it by its container address, not a host port.
seealso:
  - module: ec2ops.stack.secrets_dotenv
"""

EXAMPLES = r"""
- name: Deploy release v42 of the shop, rolling the API behind nginx
  ec2ops.stack.compose_deploy:
    project_dir: /opt/shop
    release: v42
    images:
      api: 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/shop-api:v42
      worker: 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/shop-worker:v42
    services:
      api:
        strategy: rolling
        nginx_upstream: shop_api
        port: 8080
        health:
          url: "http://{ip}:8080/api/v1/health"
          body: '"status": *"ok"'
      worker:
        strategy: recreate
    secret_versions: "{{ shop_env.secrets }}"
  register: deploy

- name: Roll back to the previous release
  ec2ops.stack.compose_deploy:
    project_dir: /opt/shop
    state: rolled_back
    release: previous

- name: Roll back to a named release
  ec2ops.stack.compose_deploy:
    project_dir: /opt/shop
    state: rolled_back
    release: v41
"""

RETURN = r"""
release:
  description: The release deployed (or rolled back to).
  returned: always
  type: str
  sample: v42
previous_release:
  description: The release that was current before this run.
  returned: always
  type: str
  sample: v41
rolled_back:
  description: Whether a rollback happened (automatic after a failed health check, or asked for).
  returned: always
  type: bool
rolled_back_to:
  description: The release serving after an automatic rollback.
  returned: when an automatic rollback happened
  type: str
services:
  description: Per service, the strategy, the pinned image before and after, the health result and seconds to healthy.
  returned: on deploy
  type: dict
  sample: {api: {strategy: rolling, old_image: "repo/api@sha256:1f..", new_image: "repo/api@sha256:9c..",
                 health: healthy, seconds_to_healthy: 5.2}}
attempt:
  description: The attempt number of this deploy of O(release) (1 for the first).
  returned: on deploy
  type: int
  sample: 1
repaired:
  description: What this run found left by a killed run, and the release it brought every service back to.
  returned: when an interrupted attempt was found
  type: dict
  sample: {interrupted: [v2], restored: v1}
durations:
  description: Seconds spent pulling, verifying and in total.
  returned: on deploy
  type: dict
  sample: {pull: 3.1, verify: 30.0, total: 41.7}
secrets_only:
  description:
    - True when this attempt changed only the env files of the running release (a secret rotation), the images and
      compose files being the same; the history records it too.
  returned: when true
  type: bool
release_commands:
  description: The release commands this attempt ran, with exit code, seconds and whether they timed out.
  returned: when a service has a release_command
  type: list
  elements: dict
  sample: [{service: api, command: python manage.py migrate, exit_code: 0, seconds: 4.2, timed_out: false}]
pruned_images:
  description: Images removed after the deploy (none a kept release needs).
  returned: after a successful deploy with prune_images
  type: list
  elements: str
story:
  description: What happened, line by line, as the deploy summary shows it.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Docker
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deploy_spec import ARGUMENT_SPEC, REQUIRED_IF
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import (
    Deployer,
    DeployError,
    DeployFailed,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    docker_bin = module.get_bin_path("docker")
    if docker_bin is None:
        if module.check_mode:
            module.exit_json(changed=True, story=["docker is not installed yet: the release would be deployed"])
        module.fail_json(msg="the docker CLI is not installed on this host; apply the ec2ops.stack.docker role first")
    docker = Docker(lambda argv: module.run_command(argv, check_rc=False), docker_bin)
    try:
        result = Deployer(docker, module.params).run(module.check_mode)
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    except DeployFailed as exc:
        module.fail_json(msg=str(exc), **exc.result)
    diff = result.pop("diff", None)
    if module._diff and diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
