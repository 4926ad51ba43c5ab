#!/usr/bin/python
# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


DOCUMENTATION = r"""
module: secrets_dotenv
short_description: Write a Docker Compose C(.env) file from AWS Secrets Manager secrets
version_added: 0.1.0
description:
  - Reads one or more AWS Secrets Manager secrets and writes them, with optional static values, as a dotenv file
    that Docker Compose v2 reads back exactly, both as O(dest) in C(env_file:) and as the project C(.env) that feeds
    C(${VAR}) interpolation.
  - Every value is quoted so that the string stored in the secret is the string the container sees (spaces, V(#),
    V(=), V($), quotes, backslashes, newlines, unicode, empty strings). A value no environment variable can hold
    (a NUL character) is rejected, never altered.
  - Replaces the C(aws secretsmanager get-secret-value ... > .env) habit, which writes raw JSON, breaks on quotes and
    V($), can print values and leaves a truncated file when it fails half-way.
  - The file is written atomically, with its final owner, group and mode set before any content, and only when its
    content changes. No secret value appears in the result, in warnings, in errors or in the diff.
  - Several secrets are fetched with C(BatchGetSecretValue) (20 per call). Pinned versions, and every secret when the
    batch API is not available or not allowed, use C(GetSecretValue). Throttling is retried with backoff.
  - Precedence, later wins. Secrets in the order of O(secrets), then O(env) on top (as Compose's C(environment:)
    wins over C(env_file:)). Overridden names, never values, are reported in a warning and in RV(overridden).
  - See C(docs/secrets_dotenv.md) in the collection for the encoding rules.
author:
  - ec2ops.stack maintainers (@ec2ops)
options:
  secrets:
    description:
      - The secrets to read, in precedence order (a later secret overrides variables of an earlier one).
      - Each item is a secret name or ARN, or a dictionary with the suboptions below.
      - A JSON object secret becomes one variable per key; strings are used as stored, numbers as written in the
        JSON, booleans as V(true)/V(false).
    type: list
    elements: raw
    required: true
    suboptions:
      id:
        description: Name or ARN of the secret.
        type: str
        required: true
      version_stage:
        description: Read this staging label (for example V(AWSPREVIOUS)) instead of V(AWSCURRENT).
        type: str
      version_id:
        description: Read this version. Mutually exclusive with O(secrets[].version_stage).
        type: str
      format:
        description:
          - How to read the secret.
          - V(json) (default without O(secrets[].name)), a JSON object, one variable per key.
          - V(plain) (default with O(secrets[].name)), the whole string becomes the variable O(secrets[].name).
          - V(dotenv), the secret holds a whole dotenv file; it is parsed by Compose's rules and every variable is
            written again safely. C($VAR) references resolve against variables defined earlier in the same secret
            only (the host environment is never consulted); an undefined reference without a default fails.
        type: str
        choices: [json, plain, dotenv]
      name:
        description: The variable a plaintext secret becomes (format V(plain)).
        type: str
      keys:
        description:
          - Only use these keys of a V(json) or V(dotenv) secret. A list keeps names, a dictionary maps a key to a new
            variable name. A listed key the secret does not have fails.
        type: raw
      prefix:
        description: Prepended to every variable name this secret provides (after renaming by O(secrets[].keys)).
        type: str
        default: ""
      optional:
        description: When V(true), a secret that does not exist or is scheduled for deletion is skipped with a warning.
        type: bool
        default: false
      binary:
        description:
          - What to do with a binary secret (C(SecretBinary)).
          - V(fail) stops with an error, V(base64) writes it base64-encoded into O(secrets[].name),
            V(text) decodes it as UTF-8 and reads it by O(secrets[].format).
        type: str
        choices: [fail, base64, text]
        default: fail
      nested:
        description:
          - What to do with a JSON value that is an object, an array or null.
          - V(fail) stops with an error, V(json) writes it as compact JSON text.
        type: str
        choices: [fail, json]
        default: fail
  env:
    description:
      - Static, non-secret variables to add, for example C(SPRING_PROFILES_ACTIVE=prod).
      - They override variables of the same name from O(secrets) (reported in a warning).
      - Numbers and booleans are written as Ansible passes them; quote a number whose exact text matters (V("1.10")).
    type: dict
    default: {}
  dest:
    description:
      - The file to write, for example the C(.env) next to C(compose.yaml). Its directory must exist.
      - A symbolic link is followed and its target is replaced.
    type: path
    required: true
  owner:
    description: Owner of O(dest). By default a replaced file keeps its owner (when running as root).
    type: str
  group:
    description: Group of O(dest). By default a replaced file keeps its group (when running as root).
    type: str
  mode:
    description:
      - Permissions of O(dest) as an octal number, quoted (V('0600')) or a YAML octal (V(0600)). Symbolic modes are
        not supported.
      - Set on the temporary file before any content is written.
    type: raw
    default: '0600'
  backup:
    description: Keep a timestamped copy of the previous file before replacing it.
    type: bool
    default: false
  files:
    description:
      - Key files from the secrets, such as the RS256 key pair a FastAPI service mounts from C(./keys). Each entry
        writes the value of one variable the secrets give (a JSON key of a secret, with O(secrets[].prefix) if set)
        to a file, atomically, never through a symbolic link, with the owner and group of O(dest).
      - C(variable) names it; C(path) is the file (relative paths are beside O(dest), for example
        C(keys/jwt_private.pem); its directory must exist); C(mode) defaults to C(0400); the variable leaves the
        C(.env) unless C(keep_in_env=true). A final new line is added when the value has none.
      - The values never appear in the result, a diff or an error; RV(files) says which files changed.
    type: list
    elements: dict
    default: []
  header:
    description: A comment written at the top of the file (each line prefixed with C(# )). Must not be secret.
    type: str
  follow:
    description:
      - Write through O(dest) when it is a symbolic link (to where it points). By default a link is refused,
        since whoever can write the directory (an app owner other than root) could point it at any file the
        module may change, such as C(/etc/shadow).
    type: bool
    default: false
    version_added: 0.3.0
notes:
  - The IAM policy needs C(secretsmanager:GetSecretValue) on the secrets (and C(kms:Decrypt) for customer managed
    keys). Add C(secretsmanager:BatchGetSecretValue) (resource V(*)) for the faster batch path; without it the
    module falls back to one C(GetSecretValue) per secret.
  - Compose gives variables exported in the shell that runs C(docker compose) precedence over the project C(.env)
    for C(${VAR}) interpolation; C(env_file:) values are not affected.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ec2ops.stack.attributes
  - ec2ops.stack.attributes.actiongroup_aws
  - ec2ops.stack.attributes.files
attributes:
  check_mode:
    support: full
    details:
      - Reads the secrets and reports what would change; writes nothing.
  diff_mode:
    support: full
    details:
      - Shows added, removed and changed variable names; every value is masked.
  idempotent:
    support: full
  safe_file_operations:
    support: full
"""

EXAMPLES = r"""
# Before: aws secretsmanager get-secret-value --secret-id prod/app --query SecretString --output text > .env
- name: Write the application's .env from Secrets Manager
  ec2ops.stack.secrets_dotenv:
    region: eu-west-1
    secrets:
      - prod/app/db          # {"DB_HOST": "...", "DB_PASSWORD": "..."}
      - id: prod/app/stripe
        keys:                # only this key, renamed
          api_key: STRIPE_API_KEY
      - id: prod/app/tls-key
        name: TLS_KEY        # a plaintext (PEM) secret becomes one variable
      - id: prod/app/feature-flags
        optional: true       # skipped with a warning while it does not exist
    env:
      SPRING_PROFILES_ACTIVE: prod
    dest: /srv/app/.env
    owner: deploy
    group: deploy
    mode: '0600'
    header: Managed by Ansible (ec2ops.stack.secrets_dotenv). Do not edit.
  register: app_env

- name: Record which secret versions this release runs with
  ansible.builtin.debug:
    msg: "{{ app_env.secrets | map(attribute='version_id') | list }}"

# A secret that already holds a whole dotenv file (the `get-secret-value > .env` habit)
- name: Rewrite a dotenv-file secret safely, with a prefix
  ec2ops.stack.secrets_dotenv:
    secrets:
      - id: legacy/app/dotenv
        format: dotenv
        prefix: LEGACY_
    dest: /srv/legacy/.env

# Local development against moto (moto_server -p 5000) or LocalStack (port 4566):
# no AWS account needed, any credentials work.
- name: Write .env from a local Secrets Manager
  ec2ops.stack.secrets_dotenv:
    endpoint_url: http://127.0.0.1:4566
    region: us-east-1
    access_key: testing
    secret_key: testing
    secrets: [dev/app]
    dest: "{{ playbook_dir }}/.env"

# Set the AWS connection once for every AWS module of this collection.
- name: Use module_defaults for region and endpoint
  module_defaults:
    group/ec2ops.stack.aws:
      region: us-east-1
      endpoint_url: http://127.0.0.1:5000
  block:
    - name: Write .env
      ec2ops.stack.secrets_dotenv:
        secrets: [dev/app]
        dest: /tmp/app.env
"""

RETURN = r"""
files:
  description: The key files of O(files), each with its variable and whether this run changed (or would change) it.
  returned: always
  type: list
  elements: dict
  sample: [{path: /opt/table-order/keys/jwt_private.pem, variable: JWT_PRIVATE_KEY, changed: true}]
dest:
  description: Path of the dotenv file.
  returned: always
  type: str
  sample: /srv/app/.env
variables:
  description:
    - Names of the variables in the file, sorted (never values).
    - Called C(variables), not C(keys), because C(result.keys) would be the dictionary method in Jinja.
  returned: always
  type: list
  elements: str
  sample: [DB_HOST, DB_PASSWORD, SPRING_PROFILES_ACTIVE]
secrets:
  description: One entry per item of O(secrets), in order, recording which secret version was used.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The id as given in O(secrets).
      type: str
      sample: prod/app/db
    found:
      description: Whether the secret was read (V(false) for a skipped optional secret).
      type: bool
    arn:
      description: ARN of the secret.
      type: str
      sample: arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/db-AbCdEf
    name:
      description: Name of the secret.
      type: str
    version_id:
      description: The version that was read.
      type: str
      sample: 4b5c9d6e-0f1a-4b2c-8d3e-5f6a7b8c9d0e
    version_stages:
      description: Staging labels of that version.
      type: list
      elements: str
      sample: [AWSCURRENT]
    variables:
      description: Variable names this secret provided (before precedence was applied).
      type: list
      elements: str
    reason:
      description: Why an optional secret was skipped (V(missing) or V(deleted)).
      type: str
changes:
  description: Variable names added, removed or given a new value, compared to the current file.
  returned: always
  type: dict
  contains:
    added:
      description: New variable names.
      type: list
      elements: str
    removed:
      description: Variable names no longer present.
      type: list
      elements: str
    changed:
      description: Variables whose value changes.
      type: list
      elements: str
    attributes:
      description: File attributes (mode, owner, group) that change while the content stays the same.
      type: list
      elements: str
overridden:
  description: Variable names set by more than one source (the later one wins).
  returned: always
  type: list
  elements: str
  sample: [LOG_LEVEL]
backup_file:
  description: Path of the backup of the previous file.
  returned: when O(backup=true) and the file was replaced
  type: str
api_calls:
  description: Secrets Manager HTTP requests made (retries included).
  returned: always
  type: int
  sample: 1
"""

import os

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.warnings import warn
from ansible_collections.amazon.aws.plugins.module_utils.botocore import HAS_BOTO3
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import (
    FileAttributeError,
    UnsafePathError,
    attribute_differences,
    parse_mode,
    read_current,
    refuse_link,
    resolve_gid,
    resolve_uid,
    set_attributes,
    target_ownership,
    write_atomic,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import DotenvError, render
from ansible_collections.ec2ops.stack.plugins.module_utils._secret_files import (
    SecretFilesError,
    normalize_files,
    plan_files,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._secrets_env import (
    SecretsEnvError,
    decode_binary,
    describe_change,
    merge,
    normalize_env,
    normalize_specs,
    override_warning,
    secret_variables,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._secrets_fetch import (
    FetchAborted,
    FetchFailure,
    arn_region,
    fetch_secrets,
)


def read_secrets(module, specs):
    """Fetch every secret; returns (sources, records, api_calls) or fails naming each broken secret."""
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3 and botocore") + " (needed to read secrets; env alone is not)")
    region = module.region
    where = f"region {region}" + (f" at {module.params['endpoint_url']}" if module.params.get("endpoint_url") else "")
    for spec in specs:
        if region and arn_region(spec.id) not in (None, region):
            module.fail_json(msg=f"{spec.label} is an ARN in region {arn_region(spec.id)}, but the module uses {where}")
    client = module.client("secretsmanager", retry_decorator=AWSRetry.jittered_backoff())
    calls = []
    client.meta.events.register("before-send.secretsmanager", lambda **kwargs: calls.append(1))
    try:
        fetched = fetch_secrets(client, specs)
    except FetchAborted as e:
        module.fail_json_aws(e.__cause__, msg=f"{e} ({where}) while reading the secrets")

    sources, records, problems = [], [], []
    for spec in specs:
        result = fetched[spec.index]
        if isinstance(result, FetchFailure):
            text = f"{spec.label} {result.describe()} in {where}"
            if spec.optional and result.kind in ("missing", "deleted"):
                warn(f"optional {text}; skipped")
                records.append({"id": spec.id, "found": False, "reason": result.kind})
            else:
                problems.append(text)
            continue
        try:
            binary = None if result.binary is None else decode_binary(result.binary)
            values = secret_variables(spec, result.string, binary)
        except SecretsEnvError as e:
            problems.append(str(e))
            continue
        sources.append((spec.label, values))
        records.append(dict(result.record(spec.id), found=True, variables=sorted(values)))
    if problems:
        module.fail_json(
            msg=f"{len(problems)} of {len(specs)} secret(s) cannot be used: " + "; ".join(problems),
            secrets=records,
            api_calls=len(calls),
        )
    return sources, records, len(calls)


def main():
    argument_spec = dict(
        # Ids and options, not secret material: no_log would mask matching text everywhere.
        secrets=dict(type="list", elements="raw", required=True, no_log=False),
        env=dict(type="dict", default={}),
        dest=dict(type="path", required=True),
        owner=dict(type="str"),
        group=dict(type="str"),
        mode=dict(type="raw", default="0600"),
        backup=dict(type="bool", default=False),
        header=dict(type="str"),
        follow=dict(type="bool", default=False),
        files=dict(type="list", elements="dict", default=[]),
    )
    # boto3 is needed only to fetch secrets: a .env of static values (env alone) works without the AWS SDK.
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True, check_boto3=False)
    params = module.params
    dest = params["dest"]
    try:
        specs = normalize_specs(params["secrets"])
        static_env = normalize_env(params["env"])
        mode = parse_mode(params["mode"])
        uid, gid = resolve_uid(params["owner"]), resolve_gid(params["group"])
    except (SecretsEnvError, FileAttributeError) as e:
        module.fail_json(msg=str(e))
    if params["follow"]:
        target = os.path.realpath(dest)
    else:
        target = os.path.abspath(dest)
        try:
            refuse_link(target, "dest")
        except UnsafePathError as e:
            module.fail_json(msg=f"{e} Or set follow=true if the link is yours.")
    if not os.path.isdir(os.path.dirname(target)):
        module.fail_json(msg=f"the directory of {dest} does not exist")
    if os.path.isdir(target):
        module.fail_json(msg=f"{dest} is a directory")

    try:
        files = normalize_files(params["files"], target)
    except SecretFilesError as e:
        module.fail_json(msg=str(e))

    sources, records, api_calls = read_secrets(module, specs) if specs else ([], [], 0)
    variables, overrides = merge(sources, static_env)
    try:
        file_plans = plan_files(files, variables, uid, gid)
    except (SecretFilesError, UnsafePathError) as e:
        module.fail_json(msg=str(e), secrets=records, api_calls=api_calls)
    if overrides:
        # Not module.warn(): AnsibleAWSModule would also pass them to exit_json (deprecated in ansible-core 2.19+).
        warn(override_warning(overrides))
    try:
        data = render(variables, params["header"]).encode("utf-8")
    except DotenvError as e:
        module.fail_json(msg=str(e))

    try:
        current_data, current_stat = read_current(target)
    except OSError as e:
        module.fail_json(msg=f"cannot read the current {dest}: {e.strerror or e}")
    changes, diff = describe_change(
        None if current_data is None else current_data.decode("utf-8", "replace"), variables, params["header"]
    )
    content_changed = current_data != data
    changes["attributes"] = [] if content_changed else attribute_differences(current_stat, mode, uid, gid)
    changed = content_changed or bool(changes["attributes"]) or any(plan[2] for plan in file_plans)
    result = dict(
        changed=changed,
        dest=dest,
        variables=sorted(variables),
        secrets=records,
        changes=changes,
        overridden=sorted({name for name, _loser, _winner in overrides}),
        api_calls=api_calls,
        files=[{"path": entry["path"], "variable": entry["variable"], "changed": c} for entry, _d, c, _s in file_plans],
    )
    if not module.check_mode:
        for entry, file_data, file_changed, file_stat in file_plans:
            if not file_changed:
                continue
            try:
                write_atomic(entry["path"], file_data, entry["mode"], *target_ownership(file_stat, uid, gid))
            except OSError as e:
                module.fail_json(msg=f"cannot write {entry['path']}: {e.strerror or e}", secrets=records)
    if (content_changed or changes["attributes"]) and not module.check_mode:
        try:
            if content_changed:
                if params["backup"] and current_data is not None:
                    result["backup_file"] = module.backup_local(target)
                write_atomic(target, data, mode, *target_ownership(current_stat, uid, gid))
            else:
                set_attributes(target, mode, uid, gid)
        except OSError as e:
            kept = "; the previous file is unchanged" if content_changed else ""
            module.fail_json(msg=f"cannot write {dest}: {e.strerror or e}{kept}", secrets=records, api_calls=api_calls)
    if module._diff:
        result["diff"] = dict(diff, before_header=dest, after_header=dest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
