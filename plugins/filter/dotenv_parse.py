# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: dotenv_parse
short_description: Read a dotenv text the way Docker Compose v2 does
version_added: 0.3.0
description:
  - Parses the text of an env file (as ec2ops.stack.secrets_dotenv writes it, or by hand) with the same parser
    that module uses to compare files, which follows Compose v2's rules. Single-quoted values are literal.
    Double-quoted values have their escapes expanded. C($VAR) and C(${VAR:-default}) are resolved against
    the variables defined earlier in the same text, never the environment.
  - For reading back a value a role wrote, e.g. the Judge0 API token, instead of a regular expression that
    cannot know the quoting rules.
  - Errors name the line and the variable, never a value. Tasks that see the result should be C(no_log).
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  _input:
    description: The file's text (e.g. C(slurp) content, C(b64decode)d).
    type: str
    required: true
  strict:
    description:
      - Refuse what Compose would fill from the host environment (a bare C(NAME) line, an undefined reference).
        V(false) reads those as empty or skips them.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Remember the API token
  ansible.builtin.set_fact:
    token: "{{ (secrets_file.content | b64decode | ec2ops.stack.dotenv_parse)['AUTHN_TOKEN'] }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: Variable name to value, in file order.
  type: dict
"""

from ansible.errors import AnsibleFilterError  # noqa: E402 (documentation first, as in modules)
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import DotenvError, parse  # noqa: E402


def dotenv_parse(text, strict=True):
    try:
        return parse(str(text or ""), strict=bool(strict))
    except DotenvError as exc:
        raise AnsibleFilterError(f"dotenv_parse: {exc}") from None


class FilterModule:
    def filters(self):
        return {"dotenv_parse": dotenv_parse}
