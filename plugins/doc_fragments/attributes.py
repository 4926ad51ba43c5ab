# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    """Shared ``attributes`` descriptions, in the style of community.docker's."""

    # Standard attributes; modules set support/details for each.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description:
      Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    ACTIONGROUP_AWS = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/ec2ops.stack.aws) in C(module_defaults) to set the AWS connection options once.
    support: full
    membership:
      - ec2ops.stack.aws
"""

    FILES = r"""
options: {}
attributes:
  safe_file_operations:
    description:
      Writes through a temporary file in the same directory and an atomic rename, so readers never see a partial file.
"""
