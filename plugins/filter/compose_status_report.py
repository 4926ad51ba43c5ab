# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: compose_status_report
short_description: Lines an operator reads from what compose_deploy_info returned
version_added: 1.0.0
description:
  - Turns the result of M(ec2ops.stack.compose_deploy_info) into short lines that read well in a terminal and in
    AWX's job output, for one report - V(status) (release, hold, running deploy, each service's containers and
    health), V(history) (releases with who, when, secret versions, schema steps, failures), V(audit) (the audit log's
    tail) or V(logs) (each container's lines).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _input:
    description: The registered result of compose_deploy_info.
    type: dict
    required: true
  what:
    description: The report.
    type: str
    choices: [status, history, audit, logs]
    default: status
"""

EXAMPLES = r"""
- name: Show the app's state
  ansible.builtin.debug:
    msg: "{{ app | ec2ops.stack.compose_status_report('status') }}"
"""

RETURN = r"""
_value:
  description: The report's lines.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError  # noqa: E402 (documentation first, as in modules)
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_status import report  # noqa: E402


def compose_status_report(status, what="status"):
    if what not in ("status", "history", "audit", "logs"):
        raise AnsibleFilterError(f"compose_status_report: what is status, history, audit or logs, not {what!r}")
    if not isinstance(status, dict) or "project" not in status:
        raise AnsibleFilterError("compose_status_report: give it the registered result of compose_deploy_info")
    return report(status, what)


class FilterModule:
    def filters(self):
        return {"compose_status_report": compose_status_report}
