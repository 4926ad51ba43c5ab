# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: nginx_input_problems
short_description: Everything wrong with the nginx role's sites and upstreams, one sentence each
version_added: 0.3.0
description:
  - Checks every value the ec2ops.stack.nginx role writes into nginx's configuration (site names, server names,
    location paths, upstream names and servers, header names and values, basic auth users, TLS modes) against
    what nginx reads as one token, so that a value holding C(;), C({), a quote, a space or a newline is refused
    before anything is rendered instead of becoming configuration of its own.
  - Returns a list of sentences, each naming the site, the offending value and what is allowed; empty when the
    input is fine.
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _input:
    description: The sites, with the role-wide defaults filled in.
    type: list
    elements: dict
    required: true
  upstreams:
    description: C(nginx_upstreams).
    type: dict
    default: {}
  install_source:
    description: C(nginx_install_source).
    type: str
    default: distro
  letsencrypt_email:
    description: C(nginx_letsencrypt_email).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Check the role's input
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "nginx: {{ problems | join('; ') }}"
  vars:
    problems: "{{ sites | ec2ops.stack.nginx_input_problems(upstreams=nginx_upstreams) }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem; empty when there is none.
  type: list
  elements: str
"""

from ansible_collections.ec2ops.stack.plugins.module_utils._nginx_input import problems  # noqa: E402 (docs first)


def nginx_input_problems(sites, upstreams=None, install_source="distro", letsencrypt_email=""):
    return problems(sites, upstreams if upstreams is not None else {}, install_source, letsencrypt_email or "")


class FilterModule:
    def filters(self):
        return {"nginx_input_problems": nginx_input_problems}
