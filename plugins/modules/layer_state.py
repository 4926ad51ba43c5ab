#!/usr/bin/python
# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: layer_state
short_description: Record and check that a host layer is still as its last converge left it
version_added: 0.2.0
description:
  - Lets C(deploy.yml) skip the layers below the app (host, docker, nginx, kafka) on a release run when nothing
    about them changed, without giving up drift correction.
  - With O(state=recorded), after a layer converged, writes C(<directory>/<layer>.json) (0600) with the layer's
    O(fingerprint), a digest of every managed path (a file's content, owner and mode; a directory's files,
    recursively) and the services the layer keeps running.
  - With O(state=checked), compares each layer in O(layers) with its record (the same fingerprint, every path
    digesting the same, every service active). It never changes anything; RV(converged) lists the layers that
    may be skipped and RV(stale) says why each other one must converge.
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  state:
    description: V(checked) compares, V(recorded) writes the state of one layer.
    type: str
    choices: [checked, recorded]
    default: checked
  layers:
    description: With O(state=checked), layer name to the fingerprint it has now (from the C(layer_fingerprint) lookup).
    type: dict
    default: {}
  layer:
    description: With O(state=recorded), the layer's name (letters, digits, C(_)).
    type: str
  fingerprint:
    description: With O(state=recorded), the layer's fingerprint.
    type: str
  paths:
    description: With O(state=recorded), the files and directories the layer manages.
    type: list
    elements: path
    default: []
  directories:
    description:
      - With O(state=recorded), directories the layer creates whose content belongs to something else (an app's
        project directory, rewritten by every release); only their existence, owner and mode are recorded.
    type: list
    elements: path
    default: []
  exclude:
    description: With O(state=recorded), glob patterns (relative to a directory in O(paths)) left out of its digest,
      for files something else rewrites (nginx upstream files switched by compose_deploy).
    type: list
    elements: str
    default: []
  services:
    description: With O(state=recorded), systemd services the layer keeps active.
    type: list
    elements: str
    default: []
  directory:
    description: Where layer states are kept.
    type: path
    default: /var/lib/ec2ops/layers
attributes:
  check_mode:
    support: full
    description: O(state=checked) runs as usual; O(state=recorded) says whether it would write.
  diff_mode:
    support: none
    description: The states are digests, not text worth a diff.
  idempotent:
    support: full
    description: Recording the same state again reports no change.
"""

EXAMPLES = r"""
- name: Check which layers have nothing to do
  ec2ops.stack.layer_state:
    layers:
      docker: "{{ lookup('ec2ops.stack.layer_fingerprint', 'docker') }}"
      nginx: "{{ lookup('ec2ops.stack.layer_fingerprint', 'nginx') }}"
  register: layers

- name: Record the nginx layer after it converged
  ec2ops.stack.layer_state:
    state: recorded
    layer: nginx
    fingerprint: "{{ lookup('ec2ops.stack.layer_fingerprint', 'nginx') }}"
    paths: [/etc/nginx, /usr/local/sbin/ec2ops-nginx-upstream]
    exclude: ["upstreams.d/*"]
    services: [nginx]
"""

RETURN = r"""
converged:
  description: Layers that are as their last converge left them.
  returned: with O(state=checked)
  type: list
  elements: str
  sample: [docker, host]
stale:
  description: Layer to the reason it must converge.
  returned: with O(state=checked)
  type: dict
  sample: {nginx: "/etc/nginx changed on the host"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2ops.stack.plugins.module_utils._layer_state import LayerStateError, check, record


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["checked", "recorded"], default="checked"),
            layers=dict(type="dict", default={}),
            layer=dict(type="str"),
            fingerprint=dict(type="str"),
            paths=dict(type="list", elements="path", default=[]),
            directories=dict(type="list", elements="path", default=[]),
            exclude=dict(type="list", elements="str", default=[]),
            services=dict(type="list", elements="str", default=[]),
            directory=dict(type="path", default="/var/lib/ec2ops/layers"),
        ),
        required_if=[("state", "recorded", ["layer", "fingerprint"])],
        supports_check_mode=True,
    )
    p = module.params
    systemctl = module.get_bin_path("systemctl")

    def service_active(name):
        if systemctl is None:
            return True
        rc, _out, _err = module.run_command([systemctl, "is-active", "--quiet", name])
        return rc == 0

    try:
        if p["state"] == "checked":
            converged, stale = check(p["directory"], p["layers"], service_active)
            module.exit_json(changed=False, converged=converged, stale=stale)
        changed = record(
            p["directory"],
            p["layer"],
            p["fingerprint"],
            p["paths"],
            p["services"],
            p["exclude"],
            write=not module.check_mode,
            directories=p["directories"],
        )
    except (LayerStateError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed)


if __name__ == "__main__":
    main()
