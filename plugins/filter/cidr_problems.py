# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: cidr_problems
short_description: What is wrong with a list of networks a user typed
version_added: 1.0.0
description:
  - Checks each value with Python's C(ipaddress) - an IPv4 or IPv6 network (C(203.0.113.0/24), C(2001:db8::/32)) or a
    single address. Returns one sentence per value that is not, or that has host bits set (C(10.0.0.5/16), with the
    network it probably means); an empty list when all are fine.
  - The one check the roles use for allow-lists (nginx maintenance, Judge0's DOCKER-USER rules).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _input:
    description: The networks (a list, or one string).
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Check the admin networks
  ansible.builtin.assert:
    that: admin_cidrs | ec2ops.stack.cidr_problems | length == 0
    fail_msg: "admin_cidrs: {{ admin_cidrs | ec2ops.stack.cidr_problems | join('; ') }}"
"""

RETURN = r"""
_value:
  description: One sentence per bad value.
  type: list
  elements: str
"""

from ansible_collections.ec2ops.stack.plugins.module_utils._cidr import cidr_problems  # noqa: E402


class FilterModule:
    def filters(self):
        return {"cidr_problems": cidr_problems}
