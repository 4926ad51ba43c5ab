# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: cgroup_v1_plan
short_description: Decide how to bring a host onto cgroup v1 (for Judge0's sandbox)
version_added: 0.1.0
description:
  - Takes what the host reports (the type of C(/sys/fs/cgroup), the distribution, the kernel release and
    C(/proc/cmdline)) and returns what the ec2ops.stack.judge0 role does about cgroups.
  - V(persist) keeps C(systemd.unified_cgroup_hierarchy=0) on the kernel command line of a host already on cgroup v1;
    V(switch) adds it to a cgroup v2 host, which then needs a reboot; V(fail) refuses a host known not to work
    (WSL2, Ubuntu 24.04 and later) unless O(allow_unsupported), or a v2 host already booted with the argument;
    V(skip) is O(setup=never).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _input:
    description: The output of C(stat -fc %T /sys/fs/cgroup) (V(cgroup2fs) is v2, V(tmpfs) is v1 or hybrid).
    type: str
    required: true
  distribution:
    description: C(ansible_facts.distribution), e.g. V(Debian), V(Ubuntu), V(Amazon).
    type: str
    required: true
  distribution_version:
    description: C(ansible_facts.distribution_version), e.g. V(12.5), V(22.04), V(2023).
    type: str
    required: true
  kernel_release:
    description: C(ansible_facts.kernel) (WSL2 kernels name Microsoft).
    type: str
    default: ""
  proc_cmdline:
    description: The running kernel's command line (C(/proc/cmdline)).
    type: str
    default: ""
  unified_mounted:
    description: Whether a cgroup2 hierarchy is mounted at C(/sys/fs/cgroup/unified) (hybrid mode).
    type: bool
    default: false
  setup:
    description: V(auto) or V(never) (C(judge0_cgroup_setup)).
    type: str
    default: auto
  allow_unsupported:
    description: Go ahead on hosts known not to work (C(judge0_cgroup_allow_unsupported)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Decide what to do about cgroups
  ansible.builtin.set_fact:
    plan: >-
      {{ cgroup_fs.stdout | ec2ops.stack.cgroup_v1_plan(ansible_facts.distribution,
         ansible_facts.distribution_version, kernel_release=ansible_facts.kernel) }}
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    mode:
      description: V(v1), V(hybrid), V(v2) or V(unknown).
      type: str
    action:
      description: V(skip), V(persist), V(switch) or V(fail).
      type: str
    message:
      description: What the action means here; for V(fail), why and which variable overrides it.
      type: str
    warnings:
      description: Things the operator should know (AL2023 support, untested systems).
      type: list
      elements: str
    kernel_arg:
      description: The kernel argument that selects cgroup v1.
      type: str
"""

from ansible.errors import AnsibleFilterError  # noqa: E402 (documentation first, as in modules)
from ansible_collections.ec2ops.stack.plugins.module_utils._cgroup_plan import plan  # noqa: E402


def cgroup_v1_plan(
    fs_type,
    distribution,
    distribution_version,
    kernel_release="",
    proc_cmdline="",
    unified_mounted=False,
    setup="auto",
    allow_unsupported=False,
):
    try:
        return plan(
            fs_type,
            distribution,
            distribution_version,
            kernel_release=kernel_release,
            proc_cmdline=proc_cmdline,
            unified_mounted=bool(unified_mounted),
            setup=setup,
            allow_unsupported=bool(allow_unsupported),
        )
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"cgroup_v1_plan": cgroup_v1_plan}
