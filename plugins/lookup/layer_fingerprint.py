# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
name: layer_fingerprint
short_description: A digest of everything that decides what a host layer's role does
version_added: 0.2.0
description:
  - For each role name, a sha256 over the role's files (tasks, templates, defaults, vars, files, handlers, meta),
    the collection's plugins (the modules the role calls) and the values of the variables whose names start with
    the role's prefix (C(nginx_) for V(nginx)), as they are set where the lookup runs (inventory, group and host
    variables, extra variables), templated.
  - The same inputs give the same fingerprint, so C(deploy.yml) can tell a layer that has nothing to do from one
    whose role, variables or collection version changed (see the ec2ops.stack.layer_state module).
  - Role defaults are covered through the role's files; facts are not part of it (a host whose files or services
    drifted is caught by ec2ops.stack.layer_state's manifest).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _terms:
    description: Role names of this collection (V(host), V(docker), V(nginx), V(kafka), V(compose_app)).
    required: true
    type: list
    elements: str
  only:
    description:
      - Only these variables, instead of every variable with the role's prefix. For the part of a role that
        must not change with every run (compose_app's host set-up, not its release).
      - A variable not set where the lookup runs counts as unset.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Fingerprint the nginx layer
  ansible.builtin.debug:
    msg: "{{ lookup('ec2ops.stack.layer_fingerprint', 'nginx') }}"

- name: Fingerprint what compose_app sets up on the host, whatever the release
  ansible.builtin.debug:
    msg: "{{ lookup('ec2ops.stack.layer_fingerprint', 'compose_app', only=['compose_app_dir', 'compose_app_owner']) }}"
"""

RETURN = r"""
_raw:
  description: One sha256 hex digest per role name.
  type: list
  elements: str
"""

import hashlib
import json
import os

from ansible.errors import AnsibleError, AnsibleUndefinedVariable
from ansible.plugins.lookup import LookupBase

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tree_digest(directory):
    """sha256 over every file below ``directory`` (relative path and content), in a stable order."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                content = hashlib.sha256(handle.read()).hexdigest()
            digest.update(f"{os.path.relpath(path, directory)}\0{content}\n".encode())
    return digest.hexdigest()


def fingerprint(role, code_digest, values):
    """The fingerprint of a layer: its role's code and the values of its variables."""
    text = json.dumps({"role": role, "code": code_digest, "vars": values}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        only = kwargs.pop("only", None)
        if kwargs or not (only is None or isinstance(only, list)):
            raise AnsibleError(f"layer_fingerprint takes role names and only=[variable names], not {sorted(kwargs)}")
        plugins = tree_digest(os.path.join(COLLECTION_ROOT, "plugins"))
        results = []
        for role in terms:
            role_dir = os.path.join(COLLECTION_ROOT, "roles", role)
            if not os.path.isdir(role_dir):
                raise AnsibleError(f"layer_fingerprint: {role!r} is not a role of ec2ops.stack ({role_dir})")
            prefix = role + "_"
            names = only if only is not None else [name for name in variables if name.startswith(prefix)]
            values = {name: self._value(variables[name]) if name in variables else None for name in names}
            results.append(fingerprint(role, tree_digest(role_dir) + plugins, values))
        return results

    def _value(self, value):
        try:
            return self._templar.template(value)
        except (AnsibleUndefinedVariable, AnsibleError):
            # Not resolvable here (it names a role internal): its text still decides the fingerprint.
            return value
