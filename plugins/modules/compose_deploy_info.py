#!/usr/bin/python
# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: compose_deploy_info
short_description: What runs in a project that compose_deploy manages, its releases, audit log and holds
description:
  - Reads, without changing anything, what an operator asks between deploys of a project managed by
    M(ec2ops.stack.compose_deploy) - the current release, the release history (who, when, secret versions,
    release commands, failures), the tail of the audit log, the operator's hold on deploys, whether a deploy is
    running now and who runs it, and every service's containers (image, state, health, seconds running, restarts,
    whether they run what the current release says).
  - With O(logs_service), also the last lines of that service's containers.
  - Every value of the current release's env files is masked (C(***)) in everything it returns.
version_added: 1.0.0
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  project_dir:
    description: The project directory (where C(.ec2ops/) is).
    type: path
    required: true
  project_name:
    description: Compose project name. Defaults to the base name of O(project_dir).
    type: str
  audit_lines:
    description: How many of the newest audit log entries to return.
    type: int
    default: 20
  logs_service:
    description: A service whose containers' logs to return.
    type: str
  logs_lines:
    description: Lines of log per container.
    type: int
    default: 100
  logs_since:
    description: Only log lines since then, as C(docker logs --since) takes it (C(10m), C(2h), C(2026-12-01T09:00:00)).
    type: str
attributes:
  check_mode:
    support: full
    description: It never changes anything.
  diff_mode:
    support: none
    description: It never changes anything, so there is no diff.
  idempotent:
    support: full
    description: It never changes anything.
notes:
  - Run it with C(become) (the release state in C(.ec2ops/) is root's alone).
seealso:
  - module: ec2ops.stack.compose_deploy
"""

EXAMPLES = r"""
- name: Read the state of the ticketing app
  ec2ops.stack.compose_deploy_info:
    project_dir: /opt/ticketing
    audit_lines: 10
  register: app

- name: The last 50 lines of the gateway of the last 10 minutes
  ec2ops.stack.compose_deploy_info:
    project_dir: /opt/ticketing
    audit_lines: 0
    logs_service: gateway
    logs_lines: 50
    logs_since: 10m
  register: gateway
"""

RETURN = r"""
current:
  description: The key of the current release (C(v42), or C(v42+2) for a second attempt), or null.
  returned: always
  type: str
  sample: "3f2c1ab"
releases:
  description: The release history, newest first (attempts that failed or were interrupted too).
  returned: always
  type: list
  elements: dict
  sample: [{key: 3f2c1ab, release: 3f2c1ab, result: deployed, deployed_by: deploy,
            started_at: "2026-12-02T09:00:01+00:00", secret_versions: [{name: ticketing/prod/app, version_id: 5c1e..}]}]
hold:
  description: The operator's hold on deploys (C(user), C(message), C(since)), or null.
  returned: always
  type: dict
deploy_running:
  description: What the deploy holding the lock now wrote about itself (user, action, release, pid, started), or null.
  returned: always
  type: dict
audit:
  description: The newest audit log entries, oldest first.
  returned: always
  type: list
  elements: dict
services:
  description: Per service, its containers and whether they run what the current release says (C(as_released)).
  returned: always
  type: dict
  sample: {gateway: {as_released: true, release_image: "registry/gateway@sha256:9c..",
                     containers: [{name: ticketing-gateway-1, state: running, health: healthy, running_seconds: 3600,
                                   restarts: 0, image: "registry/gateway@sha256:9c.."}]}}
logs:
  description: Per container of O(logs_service), its last log lines (masked).
  returned: when O(logs_service) is set
  type: dict
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Docker, DockerError
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deploy_spec import SERVICE_NAME_RE
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_status import project_status
from ansible_collections.ec2ops.stack.plugins.module_utils._release_history import HistoryError

_SINCE_RE = re.compile(r"[0-9][0-9A-Za-z:.+-]{0,39}\Z")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            project_name=dict(type="str"),
            audit_lines=dict(type="int", default=20),
            logs_service=dict(type="str"),
            logs_lines=dict(type="int", default=100),
            logs_since=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["logs_service"] is not None and not SERVICE_NAME_RE.match(p["logs_service"]):
        module.fail_json(
            msg=f"logs_service {p['logs_service']!r} is not a service name (letters, digits, '_', '.', '-')"
        )
    if p["logs_since"] is not None and not _SINCE_RE.match(p["logs_since"]):
        module.fail_json(
            msg=f"logs_since {p['logs_since']!r} is not a time docker logs takes: 10m, 2h or 2026-12-01T09:00"
        )
    if p["audit_lines"] < 0 or p["logs_lines"] < 1:
        module.fail_json(msg="audit_lines must be at least 0 and logs_lines at least 1")
    docker_bin = module.get_bin_path("docker", required=True)
    docker = Docker(lambda argv: module.run_command(argv, check_rc=False), docker_bin)
    project = p["project_name"] or p["project_dir"].rstrip("/").rsplit("/", 1)[-1]
    logs = None
    if p["logs_service"]:
        logs = {"service": p["logs_service"], "lines": p["logs_lines"], "since": p["logs_since"]}
    try:
        status = project_status(docker, p["project_dir"], project, p["audit_lines"], logs)
    except (HistoryError, DockerError, OSError) as exc:
        module.fail_json(msg=f"cannot read the state of {project}: {exc}")
    module.exit_json(changed=False, **status)


if __name__ == "__main__":
    main()
