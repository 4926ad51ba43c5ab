# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: judge0_version_gate
short_description: Decide whether a Judge0 image may be deployed (the sandbox-escape CVE gate)
version_added: 0.3.0
description:
  - Judge0 1.13.0 and older have sandbox escapes to the host (CVE-2024-28185, CVE-2024-28189, CVE-2024-29021).
  - Before a deploy, the version is taken from the image's tag when O(_input) is set, else from O(version), and must
    be written strictly as C(x.y.z) (a leading C(v) is allowed). A tag that is not such a version (V(latest),
    V(1.13), V(1.13.0-extra), a custom tag) or a bare digest makes the version unknown.
  - After a deploy, with O(about), the verdict is on the version the running server reports on C(/about).
  - The ec2ops.stack.judge0 role fails with RV(_value.message) unless RV(_value.allowed).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _input:
    description: The image reference (C(judge0_image)); empty to use O(version) with the official image.
    type: str
    required: true
  version:
    description: C(judge0_version).
    type: str
    default: ""
  allow_vulnerable:
    description: Allow a version of 1.13.0 or older (C(judge0_allow_vulnerable_version)).
    type: bool
    default: false
  allow_unknown:
    description: Allow an image whose version cannot be known before the deploy (C(judge0_allow_unknown_version)).
    type: bool
    default: false
  about:
    description: The JSON the deployed server answered on C(/about); the verdict is then on its C(version).
    type: dict
"""

EXAMPLES = r"""
- name: Refuse Judge0 versions with known sandbox escapes
  ansible.builtin.assert:
    that: gate.allowed
    fail_msg: "{{ gate.message }}"
  vars:
    gate: "{{ judge0_image | ec2ops.stack.judge0_version_gate(version=judge0_version) }}"
"""

RETURN = r"""
_value:
  description: The verdict.
  type: dict
  contains:
    version:
      description: The version as C(x.y.z), or null when it is not known.
      type: str
    source:
      description: Where the version came from (the image, C(judge0_version) or C(/about)).
      type: str
    verdict:
      description: V(ok), V(vulnerable), V(unknown) or V(invalid) (a C(judge0_version) that is not a version).
      type: str
    allowed:
      description: Whether the role goes ahead (an override counts).
      type: bool
    message:
      description: For anything but V(ok), why, naming the CVEs, the fix and the override.
      type: str
"""

from ansible_collections.ec2ops.stack.plugins.module_utils._judge0_version import (  # noqa: E402 (docs first)
    gate,
    running_verdict,
)


def judge0_version_gate(image, version="", allow_vulnerable=False, allow_unknown=False, about=None):
    if about is not None:
        return running_verdict(about, allow_vulnerable=bool(allow_vulnerable), allow_unknown=bool(allow_unknown))
    return gate(
        str(image or ""), str(version or ""), allow_vulnerable=bool(allow_vulnerable), allow_unknown=bool(allow_unknown)
    )


class FilterModule:
    def filters(self):
        return {"judge0_version_gate": judge0_version_gate}
