# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn Secrets Manager payloads into environment variables (pure, no AWS).

This is a private module_utils (leading underscore): no stable API.

* ``normalize_specs`` checks the ``secrets`` option of the secrets_dotenv module;
* ``secret_variables`` turns one payload (SecretString or SecretBinary) into
  variables, following the entry's format, key allow-list, renames and prefix;
* ``merge`` applies the documented precedence (``secrets`` in list order, later
  entries win, then ``env`` on top) and reports which names were overridden;
* ``describe_change`` says what a write changes (names only) and builds a masked diff.

Exceptions name the secret and the key, never a value.
"""

import base64
import binascii
import json

from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import (
    NAME_PATTERN,
    DotenvError,
    comment_lines,
    is_valid_name,
    unrepresentable_reason,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import parse as parse_dotenv

FORMATS = ("json", "plain", "dotenv")
BINARY_MODES = ("fail", "base64", "text")
NESTED_MODES = ("fail", "json")
MASK = "********"
ENV_SOURCE = "env"
_ENTRY_OPTIONS = (
    "id",
    "version_stage",
    "version_id",
    "prefix",
    "keys",
    "name",
    "format",
    "optional",
    "binary",
    "nested",
)
_BOOLEANS = {True: True, False: False, "true": True, "false": False, "yes": True, "no": False}


class SecretsEnvError(ValueError):
    """A configuration or payload problem.  The message names secrets and keys, never values."""


class SecretSpec:
    """One normalized item of the ``secrets`` option."""

    __slots__ = (*_ENTRY_OPTIONS, "index")

    def __init__(self, index, **options):
        self.index = index
        for option in _ENTRY_OPTIONS:
            setattr(self, option, options.get(option))

    @property
    def label(self):
        """How messages name this secret: its id as given."""
        return f"secret {self.id!r}"

    @property
    def pinned(self):
        """True when a version is pinned (BatchGetSecretValue cannot fetch it)."""
        return bool(self.version_id or self.version_stage)


def normalize_specs(entries):
    """Check the ``secrets`` option and return a list of ``SecretSpec``."""
    if not isinstance(entries, list):
        raise SecretsEnvError("secrets must be a list of secret ids or dicts")
    return [_normalize_spec(index, entry) for index, entry in enumerate(entries)]


def _normalize_spec(index, entry):
    where = f"secrets[{index}]"
    if isinstance(entry, str):
        entry = {"id": entry}
    if not isinstance(entry, dict):
        raise SecretsEnvError(f"{where} must be a secret id (string) or a dict with 'id'")
    unknown = sorted(str(k) for k in entry if k not in _ENTRY_OPTIONS)
    if unknown:
        raise SecretsEnvError(
            f"{where}: unsupported option(s) {', '.join(unknown)}; known: {', '.join(_ENTRY_OPTIONS)}"
        )
    secret_id = entry.get("id")
    if not isinstance(secret_id, str) or not secret_id.strip():
        raise SecretsEnvError(f"{where} needs 'id' (the secret name or ARN)")
    where = f"{where} ({secret_id!r})"
    for option in ("version_stage", "version_id", "prefix", "name"):
        if entry.get(option) is not None and not isinstance(entry[option], str):
            raise SecretsEnvError(f"{where}: {option} must be a string")
    if entry.get("version_stage") and entry.get("version_id"):
        raise SecretsEnvError(f"{where}: set version_stage or version_id, not both")
    name = entry.get("name")
    fmt = _choice(entry, "format", FORMATS, "plain" if name else "json", where)
    binary = _choice(entry, "binary", BINARY_MODES, "fail", where)
    nested = _choice(entry, "nested", NESTED_MODES, "fail", where)
    optional = entry.get("optional", False)
    if optional not in _BOOLEANS:
        raise SecretsEnvError(f"{where}: optional must be a boolean")
    prefix = entry.get("prefix") or ""
    keys = _normalize_keys(entry.get("keys"), where)
    if fmt == "plain":
        if not name:
            raise SecretsEnvError(f"{where}: format plain needs 'name' (the variable the secret becomes)")
        if keys is not None:
            raise SecretsEnvError(f"{where}: 'keys' applies to format json or dotenv, not plain")
        if not is_valid_name(prefix + name):
            raise SecretsEnvError(f"{where}: invalid variable name {prefix + name!r}: names must match {NAME_PATTERN}")
    elif name:
        raise SecretsEnvError(f"{where}: 'name' is for format plain; format {fmt} takes its names from the secret")
    if binary == "base64" and fmt != "plain":
        raise SecretsEnvError(f"{where}: binary base64 makes one variable: set 'name' (format plain)")
    if nested == "json" and fmt != "json":
        raise SecretsEnvError(f"{where}: 'nested' applies to format json only")
    return SecretSpec(
        index,
        id=secret_id,
        version_stage=entry.get("version_stage") or None,
        version_id=entry.get("version_id") or None,
        prefix=prefix,
        keys=keys,
        name=name,
        format=fmt,
        optional=_BOOLEANS[optional],
        binary=binary,
        nested=nested,
    )


def _choice(entry, option, choices, default, where):
    value = entry.get(option)
    if value is None:
        return default
    if value not in choices:
        raise SecretsEnvError(f"{where}: {option} must be one of {', '.join(choices)}")
    return value


def _normalize_keys(keys, where):
    """``keys`` as an ordered ``{key in secret: variable name}``, or None (all keys)."""
    if keys is None:
        return None
    if isinstance(keys, list):
        if not all(isinstance(k, str) for k in keys):
            raise SecretsEnvError(f"{where}: keys must be a list of key names or a dict of key: new name")
        return {k: k for k in keys}
    if isinstance(keys, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise SecretsEnvError(f"{where}: keys must be a list of key names or a dict of key: new name")
        return dict(keys)
    raise SecretsEnvError(f"{where}: keys must be a list of key names or a dict of key: new name")


def normalize_env(env):
    """The ``env`` option as ``{name: str}``: strings as given, booleans as true/false, numbers as written."""
    result = {}
    for name, value in (env or {}).items():
        if not is_valid_name(name):
            raise SecretsEnvError(f"env: invalid variable name {name!r}: names must match {NAME_PATTERN}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise SecretsEnvError(f"env: {name} must be a string, number or boolean")
        reason = unrepresentable_reason(value)
        if reason:
            raise SecretsEnvError(f"env: the value of {name} {reason}")
        result[name] = value
    return result


def secret_variables(spec, secret_string=None, secret_binary=None):
    """The variables one secret provides, as an ordered ``{name: value}``.

    Exactly one of ``secret_string`` / ``secret_binary`` (bytes) is set, as
    Secrets Manager returns them.  Every failure raises ``SecretsEnvError``
    naming ``spec.id`` and the key concerned.
    """
    where = spec.label
    if secret_string is None:
        if secret_binary is None:
            raise SecretsEnvError(f"{where} has neither SecretString nor SecretBinary")
        if spec.binary == "fail":
            raise SecretsEnvError(
                f"{where} is binary (SecretBinary): set binary: base64 to store it base64-encoded"
                " (with name), or binary: text if it holds UTF-8 text"
            )
        if spec.binary == "base64":
            return _checked(spec, {spec.prefix + spec.name: base64.b64encode(secret_binary).decode("ascii")})
        try:
            secret_string = secret_binary.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretsEnvError(f"{where} is binary and not valid UTF-8 text; use binary: base64") from None
    if spec.format == "plain":
        return _checked(spec, {spec.prefix + spec.name: secret_string})
    if spec.format == "dotenv":
        try:
            values = parse_dotenv(secret_string, strict=True)
        except DotenvError as e:
            raise SecretsEnvError(f"{where} is not a dotenv file Compose can read ({e})") from None
    else:
        values = _json_object(spec, secret_string)
    return _checked(spec, _select(spec, values))


def _json_object(spec, text):
    where = spec.label

    def pairs_hook(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise SecretsEnvError(f"{where}: key {key!r} appears more than once in the JSON object")
            result[key] = value
        return result

    def constant_hook(name):
        raise SecretsEnvError(f"{where} is not valid JSON ({name} is not a JSON value)")

    try:
        # Numbers keep the exact text stored in the secret (1.10 stays "1.10", not 1.1).
        data = json.loads(
            text,
            object_pairs_hook=pairs_hook,
            parse_float=_JSONNumber,
            parse_int=_JSONNumber,
            parse_constant=constant_hook,
        )
    except ValueError as e:
        if isinstance(e, SecretsEnvError):
            raise
        # json's message gives a position only ("Expecting value: line 1 column 1 (char 0)").
        pos = f"line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else "unknown position"
        raise SecretsEnvError(
            f"{where} is not valid JSON ({pos}); for a plaintext secret set 'name', for a dotenv file format: dotenv"
        ) from None
    if not isinstance(data, dict):
        raise SecretsEnvError(
            f"{where} holds JSON that is not an object ({_json_kind(data)}); set 'name' to use the whole string"
            " as one variable"
        )
    result = {}
    for key, value in data.items():
        if isinstance(value, _JSONNumber):
            result[key] = str(value)
        elif isinstance(value, str):
            result[key] = value
        elif isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif spec.nested == "json":
            result[key] = _compact_json(value)
        else:
            raise SecretsEnvError(
                f"{where}: key {key!r} holds {_json_kind(value)}, not a string, number or boolean;"
                " set nested: json to store it as JSON text"
            )
    return result


class _JSONNumber(str):
    """A JSON number, kept as the text that was stored."""


def _compact_json(value):
    """Compact JSON text of a parsed value; numbers keep their stored text."""
    if isinstance(value, dict):
        return "{" + ",".join(_compact_json(k) + ":" + _compact_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact_json(v) for v in value) + "]"
    if isinstance(value, _JSONNumber):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _json_kind(value):
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, _JSONNumber):
        return "a number"
    if isinstance(value, bool):
        return "a boolean"
    return "a string"


def _select(spec, values):
    """Apply the ``keys`` allow-list / renames and the prefix."""
    if spec.keys is None:
        selected = values
    else:
        missing = [k for k in spec.keys if k not in values]
        if missing:
            raise SecretsEnvError(f"{spec.label} has no key(s) {', '.join(map(repr, missing))} listed in 'keys'")
        selected = {spec.keys[k]: values[k] for k in spec.keys}
        if len(selected) != len(spec.keys):
            raise SecretsEnvError(f"{spec.label}: 'keys' renames two keys to the same name")
    return {spec.prefix + name: value for name, value in selected.items()}


def _checked(spec, variables):
    for name, value in variables.items():
        if not is_valid_name(name):
            raise SecretsEnvError(
                f"{spec.label}: key {name!r} is not a valid variable name ({NAME_PATTERN}); rename it with 'keys'"
            )
        reason = unrepresentable_reason(value)
        if reason:
            raise SecretsEnvError(f"{spec.label}: the value of key {name!r} {reason}")
    return variables


def merge(sources, env=None):
    """Combine per-source variables by precedence: later sources win, ``env`` wins over all.

    ``sources`` is a list of ``(label, {name: value})`` in ``secrets`` order.
    Returns ``(variables, overrides)``; ``overrides`` lists ``(name, loser, winner)``
    labels, never values.
    """
    variables = {}
    origin = {}
    overrides = []
    for index, (label, values) in enumerate([*list(sources), (ENV_SOURCE, env or {})]):
        for name, value in values.items():
            if name in origin and origin[name][0] != index:
                overrides.append((name, origin[name][1], label))
            variables[name] = value
            origin[name] = (index, label)
    return variables, overrides


def override_warning(overrides):
    """One warning line naming overridden variables and their sources (no values)."""
    parts = [f"{name} ({loser} overridden by {winner})" for name, loser, winner in overrides]
    return (
        "variables set by more than one source; the later source wins (secrets in list order, then env): "
        + "; ".join(parts)
    )


def describe_change(old_text, new_variables, header=None):
    """What writing ``new_variables`` over ``old_text`` changes, without a single value.

    ``old_text`` is the current file content (None if there is no file).
    Returns ``(changes, diff)``: ``changes`` has sorted ``added``, ``removed`` and
    ``changed`` names; ``diff`` has ``before``/``after`` texts for Ansible's diff
    mode, one ``NAME=********`` line per variable (``(changed)`` marks a new
    value).  Comments of the old file are never shown (they may hold old values);
    the header line(s) appear when the old file starts with the same header.
    """
    new_header = comment_lines(header) if header else []
    if old_text is None:
        old_variables, before_lines = {}, []
    else:
        try:
            old_variables = parse_dotenv(old_text, strict=False)
        except DotenvError:
            old_variables = None
        old_lines = old_text.splitlines()
        if new_header and old_lines[: len(new_header)] == new_header:
            before_lines = list(new_header)
        elif old_lines and old_lines[0].startswith("#"):
            before_lines = ["# (comments of the current file are not shown)"]
        else:
            before_lines = []
        if old_variables is None:
            before_lines.append("# (the current file is not a dotenv file Compose can read)")
    known = old_variables or {}
    changes = {
        "added": sorted(set(new_variables) - set(known)),
        "removed": sorted(set(known) - set(new_variables)),
        "changed": sorted(k for k in set(new_variables) & set(known) if new_variables[k] != known[k]),
    }
    before_lines.extend(f"{name}={MASK}" for name in sorted(known))
    after_lines = list(new_header)
    after_lines.extend(
        f"{name}={MASK}" + (" (changed)" if name in changes["changed"] else "") for name in sorted(new_variables)
    )
    diff = {"before": _text(before_lines), "after": _text(after_lines)}
    return changes, diff


def _text(lines):
    return "\n".join(lines) + "\n" if lines else ""


def decode_binary(value):
    """SecretBinary as bytes (boto3 gives bytes; some fakes give base64 text)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise SecretsEnvError("SecretBinary is neither bytes nor base64 text") from None
