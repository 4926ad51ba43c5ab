#!/usr/bin/python
# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: kernel_cmdline
short_description: Add or remove kernel arguments in GRUB_CMDLINE_LINUX of /etc/default/grub
version_added: 0.1.0
description:
  - Edits the kernel command line that C(update-grub) or C(grub2-mkconfig) read from O(path). It adds the arguments in
    O(add) and removes those in O(remove), in the last uncommented assignment of O(variable) (the one the shell
    uses). Every other line, the value's quoting and a trailing comment are kept. A missing assignment is appended.
  - V(key=value) in O(add) replaces an existing V(key) or V(key=other) (duplicates collapse into one); a bare V(key)
    in O(remove) removes V(key) and every V(key=...).
  - Writes atomically (a temporary file in the same directory renamed over O(path)), keeping the file's owner and
    mode, and only when the arguments change.
  - It does not regenerate the boot loader configuration or reboot; run C(update-grub), C(grub2-mkconfig) or
    C(grubby) after a change (the ec2ops.stack.judge0 role does).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  path:
    description: The GRUB defaults file.
    type: path
    default: /etc/default/grub
  variable:
    description: The variable holding the arguments; V(GRUB_CMDLINE_LINUX_DEFAULT) applies to normal boots only.
    type: str
    default: GRUB_CMDLINE_LINUX
  add:
    description: Arguments that must be present, e.g. V(systemd.unified_cgroup_hierarchy=0).
    type: list
    elements: str
    default: []
  remove:
    description: Arguments (V(key) or V(key=value)) that must be absent. Applied before O(add).
    type: list
    elements: str
    default: []
  create:
    description: Create O(path) (mode 0644) when it does not exist; otherwise a missing file fails.
    type: bool
    default: false
extends_documentation_fragment:
  - ec2ops.stack.attributes
  - ec2ops.stack.attributes.files
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the arguments would change and, with diff, the file before and after; writes nothing.
  diff_mode:
    support: full
  idempotent:
    support: full
  safe_file_operations:
    support: full
notes:
  - Arguments may use letters, digits and C(_.,:/=+@%~^-); anything needing shell quoting is refused.
seealso:
  - name: GRUB manual, Simple configuration handling
    link: https://www.gnu.org/software/grub/manual/grub/html_node/Simple-configuration.html
    description: GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT.
"""

EXAMPLES = r"""
- name: Boot with the cgroup v1 hierarchy
  ec2ops.stack.kernel_cmdline:
    add: [systemd.unified_cgroup_hierarchy=0]
  register: grub_cmdline

- name: Regenerate the GRUB configuration
  ansible.builtin.command: update-grub
  when: grub_cmdline is changed

- name: Go back to the default (unified) hierarchy
  ec2ops.stack.kernel_cmdline:
    remove: [systemd.unified_cgroup_hierarchy]
"""

RETURN = r"""
args_before:
  description: The arguments of O(variable) before the change.
  returned: success
  type: list
  elements: str
  sample: [console=ttyS0]
args_after:
  description: The arguments of O(variable) after the change (what they would be in check mode).
  returned: success
  type: list
  elements: str
  sample: [console=ttyS0, systemd.unified_cgroup_hierarchy=0]
path:
  description: The file edited.
  returned: success
  type: str
  sample: /etc/default/grub
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import read_current, write_atomic
from ansible_collections.ec2ops.stack.plugins.module_utils._grub_cmdline import GrubCmdlineError, edit


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/default/grub"),
            variable=dict(type="str", default="GRUB_CMDLINE_LINUX"),
            add=dict(type="list", elements="str", default=[]),
            remove=dict(type="list", elements="str", default=[]),
            create=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    path = os.path.realpath(module.params["path"])
    data, current_stat = read_current(path)
    if data is None and not module.params["create"]:
        module.fail_json(msg=f"{path} does not exist (set create=true to create it)", path=path)
    try:
        text = (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        module.fail_json(msg=f"{path} is not UTF-8 text; edit it by hand", path=path)
    try:
        result = edit(text, module.params["add"], module.params["remove"], module.params["variable"])
    except GrubCmdlineError as exc:
        module.fail_json(msg=f"{path}: {exc}", path=path)

    changed = result.changed or data is None
    if changed and not module.check_mode:
        mode = current_stat.st_mode & 0o7777 if current_stat else 0o644
        uid, gid = (current_stat.st_uid, current_stat.st_gid) if current_stat else (-1, -1)
        try:
            write_atomic(path, result.text.encode("utf-8"), mode, uid, gid)
        except OSError as exc:
            module.fail_json(msg=f"could not write {path}: {exc}", path=path)
    output = dict(changed=changed, path=path, args_before=result.before, args_after=result.after)
    if module._diff and changed:
        output["diff"] = {
            "before": text,
            "after": result.text,
            "before_header": path,
            "after_header": path,
        }
    module.exit_json(**output)


if __name__ == "__main__":
    main()
