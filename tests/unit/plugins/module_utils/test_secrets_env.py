"""Unit tests for turning secret payloads into variables, precedence and the masked diff."""

import base64
import json

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._secrets_env import (
    MASK,
    SecretsEnvError,
    decode_binary,
    describe_change,
    merge,
    normalize_env,
    normalize_specs,
    override_warning,
    secret_variables,
)

# Selected by `pytest -k dotenv` with the rest of the secrets_dotenv tests.
pytestmark = pytest.mark.secrets_dotenv


def spec(**entry):
    entry.setdefault("id", "app/secret")
    return normalize_specs([entry])[0]


# --- normalize_specs -------------------------------------------------------------------------------------


def test_string_entry_and_defaults():
    [s] = normalize_specs(["prod/app"])
    assert (s.id, s.format, s.prefix, s.keys, s.name, s.optional, s.binary, s.nested) == (
        "prod/app",
        "json",
        "",
        None,
        None,
        False,
        "fail",
        "fail",
    )
    assert s.label == "secret 'prod/app'" and not s.pinned


def test_name_makes_plain_the_default_format():
    s = spec(name="TLS_KEY", prefix="APP_")
    assert s.format == "plain" and s.name == "TLS_KEY"


def test_keys_list_and_dict():
    assert spec(keys=["A", "B"]).keys == {"A": "A", "B": "B"}
    assert spec(keys={"a": "A"}).keys == {"a": "A"}


def test_pinned_versions():
    assert spec(version_stage="AWSPREVIOUS").pinned
    assert spec(version_id="abc").pinned


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("app", "secrets must be a list"),
        ([1], r"secrets\[0\] must be a secret id"),
        ([{}], r"secrets\[0\] needs 'id'"),
        ([{"id": " "}], "needs 'id'"),
        ([{"id": "a", "prefx": "X"}], "unsupported option.*prefx"),
        ([{"id": "a", "version_stage": "S", "version_id": "V"}], "not both"),
        ([{"id": "a", "format": "yaml"}], "format must be one of json, plain, dotenv"),
        ([{"id": "a", "format": "plain"}], "format plain needs 'name'"),
        ([{"id": "a", "name": "X", "keys": ["k"]}], "'keys' applies to format json or dotenv"),
        ([{"id": "a", "name": "1X"}], "invalid variable name '1X'"),
        ([{"id": "a", "name": "X", "prefix": "BAD-"}], "invalid variable name 'BAD-X'"),
        ([{"id": "a", "format": "json", "name": "X"}], "'name' is for format plain"),
        ([{"id": "a", "binary": "base64"}], "binary base64 makes one variable"),
        ([{"id": "a", "binary": "hex"}], "binary must be one of"),
        ([{"id": "a", "nested": "json", "name": "X"}], "'nested' applies to format json only"),
        ([{"id": "a", "optional": "maybe"}], "optional must be a boolean"),
        ([{"id": "a", "keys": "A"}], "keys must be a list"),
        ([{"id": "a", "keys": [1]}], "keys must be a list"),
        ([{"id": "a", "keys": {"a": 1}}], "keys must be a list"),
        ([{"id": "a", "prefix": 1}], "prefix must be a string"),
    ],
)
def test_invalid_entries(entries, message):
    with pytest.raises(SecretsEnvError, match=message):
        normalize_specs(entries)


# --- normalize_env ---------------------------------------------------------------------------------------


def test_env_values():
    assert normalize_env({"A": "x", "B": True, "C": False, "D": 8080, "E": 1.5}) == {
        "A": "x",
        "B": "true",
        "C": "false",
        "D": "8080",
        "E": "1.5",
    }
    assert normalize_env(None) == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"bad-name": "x"}, "invalid variable name 'bad-name'"),
        ({"A": None}, "A must be a string, number or boolean"),
        ({"A": ["x"]}, "A must be a string"),
        ({"A": "x\x00"}, "the value of A contains a NUL"),
    ],
)
def test_invalid_env(env, message):
    with pytest.raises(SecretsEnvError, match=message):
        normalize_env(env)


# --- secret_variables ------------------------------------------------------------------------------------


def test_json_object():
    payload = '{"S": "a \\"b\\" $c", "I": 5432, "F": 1.10, "E": 1e3, "T": true, "N": false, "EMPTY": ""}'
    assert secret_variables(spec(), payload) == {
        "S": 'a "b" $c',
        "I": "5432",
        "F": "1.10",
        "E": "1e3",
        "T": "true",
        "N": "false",
        "EMPTY": "",
    }


def test_keys_rename_and_prefix():
    payload = json.dumps({"user": "u", "password": "p", "other": "o"})
    assert secret_variables(spec(keys={"user": "DB_USER", "password": "DB_PASSWORD"}, prefix="APP_"), payload) == {
        "APP_DB_USER": "u",
        "APP_DB_PASSWORD": "p",
    }
    assert secret_variables(spec(keys=["user"]), payload) == {"user": "u"}


def test_nested_json():
    payload = '{"L": [1, 2.50, "x"], "O": {"k": null, "u": "é"}, "Z": null}'
    assert secret_variables(spec(nested="json"), payload) == {
        "L": '[1,2.50,"x"]',
        "O": '{"k":null,"u":"é"}',
        "Z": "null",
    }


def test_plain_and_prefix():
    pem = "-----BEGIN-----\nx\n"
    assert secret_variables(spec(name="KEY", prefix="TLS_"), pem) == {"TLS_KEY": pem}
    assert secret_variables(spec(name="KEY"), '{"looks": "like json"}') == {"KEY": '{"looks": "like json"}'}


def test_dotenv_format():
    text = "# comment\nexport A=1\nB='two $words'\nC=\"${A}\\n\"\nD=${UNSET:-dflt}\n"
    assert secret_variables(spec(format="dotenv"), text) == {"A": "1", "B": "two $words", "C": "1\n", "D": "dflt"}
    assert secret_variables(spec(format="dotenv", keys={"B": "BEE"}, prefix="X_"), text) == {"X_BEE": "two $words"}


def test_binary():
    assert secret_variables(spec(name="BLOB", binary="base64"), secret_binary=b"\x00\xff") == {
        "BLOB": base64.b64encode(b"\x00\xff").decode()
    }
    assert secret_variables(spec(binary="text"), secret_binary=b'{"A": "1"}') == {"A": "1"}
    assert secret_variables(spec(binary="text", name="T"), secret_binary="é".encode()) == {"T": "é"}


LEAK = "leak-7f3a"


@pytest.mark.parametrize(
    ("entry", "string", "binary", "message"),
    [
        ({}, f'{{"A": "{LEAK}"', None, r"secret 'app/secret' is not valid JSON \(line 1 column 18\)"),
        ({}, f"{LEAK} plain", None, "is not valid JSON.*set 'name'"),
        ({}, f'["{LEAK}"]', None, r"holds JSON that is not an object \(an array\)"),
        ({}, f'"{LEAK}"', None, r"not an object \(a string\)"),
        ({}, "42", None, r"not an object \(a number\)"),
        ({}, "null", None, r"not an object \(null\)"),
        ({}, "true", None, r"not an object \(a boolean\)"),
        ({}, '{"A": NaN}', None, "NaN is not a JSON value"),
        ({}, f'{{"A": "{LEAK}", "A": "x"}}', None, "key 'A' appears more than once"),
        ({}, f'{{"A": {{"x": "{LEAK}"}}}}', None, "key 'A' holds an object.*nested: json"),
        ({}, f'{{"A": ["{LEAK}"]}}', None, "key 'A' holds an array"),
        ({}, '{"A": null}', None, "key 'A' holds null"),
        ({}, f'{{"bad-name": "{LEAK}"}}', None, "key 'bad-name' is not a valid variable name"),
        ({"prefix": "1"}, f'{{"A": "{LEAK}"}}', None, "key '1A' is not a valid variable name"),
        ({}, '{"A": "x\\u0000y"}', None, "the value of key 'A' contains a NUL"),
        ({"keys": ["A", "MISSING"]}, f'{{"A": "{LEAK}"}}', None, "has no key.*'MISSING'"),
        ({"keys": {"A": "X", "B": "X"}}, '{"A": "1", "B": "2"}', None, "renames two keys to the same name"),
        ({}, None, LEAK.encode(), r"is binary \(SecretBinary\)"),
        ({"binary": "text"}, None, b"\xff" + LEAK.encode(), "not valid UTF-8"),
        ({}, None, None, "neither SecretString nor SecretBinary"),
        ({"format": "dotenv"}, f"A='{LEAK}", None, "not a dotenv file Compose can read.*unterminated"),
        ({"format": "dotenv"}, f"A={LEAK}$X", None, "not defined earlier"),
        ({"format": "dotenv"}, f"bad-name={LEAK}", None, "key 'bad-name' is not a valid variable name"),
    ],
)
def test_payload_errors_name_the_secret_and_key_never_the_value(entry, string, binary, message):
    with pytest.raises(SecretsEnvError, match=message) as e:
        secret_variables(spec(**entry), string, binary)
    assert "app/secret" in str(e.value)
    assert LEAK not in str(e.value)


def test_decode_binary():
    assert decode_binary(b"\x00") == b"\x00"
    assert decode_binary(bytearray(b"\x01")) == b"\x01"
    assert decode_binary(base64.b64encode(b"\x02").decode()) == b"\x02"
    with pytest.raises(SecretsEnvError):
        decode_binary("not base64!")


# --- merge / precedence ----------------------------------------------------------------------------------


def test_later_secrets_win_and_env_wins_over_all():
    variables, overrides = merge(
        [("secret 'base'", {"A": "1", "B": "1", "C": "1"}), ("secret 'prod'", {"B": "2", "C": "2"})],
        {"C": "env", "D": "env"},
    )
    assert variables == {"A": "1", "B": "2", "C": "env", "D": "env"}
    assert overrides == [
        ("B", "secret 'base'", "secret 'prod'"),
        ("C", "secret 'base'", "secret 'prod'"),
        ("C", "secret 'prod'", "env"),
    ]
    warning = override_warning(overrides)
    assert warning.endswith(
        "B (secret 'base' overridden by secret 'prod'); C (secret 'base' overridden by secret 'prod'); "
        "C (secret 'prod' overridden by env)"
    )
    assert "'1'" not in warning and "'2'" not in warning


def test_same_secret_listed_twice_is_reported():
    _variables, overrides = merge([("secret 'a'", {"A": "1"}), ("secret 'a'", {"A": "2"})])
    assert overrides == [("A", "secret 'a'", "secret 'a'")]


def test_no_override_no_warning():
    assert merge([("s", {"A": "1"})], {"B": "2"}) == ({"A": "1", "B": "2"}, [])


# --- describe_change -------------------------------------------------------------------------------------


def test_describe_change_new_file():
    changes, diff = describe_change(None, {"B": "secret-b", "A": "secret-a"}, header="hdr")
    assert changes == {"added": ["A", "B"], "removed": [], "changed": []}
    assert diff == {"before": "", "after": f"# hdr\nA={MASK}\nB={MASK}\n"}


def test_describe_change_masks_and_marks_changes():
    old = "# hdr\nKEEP='same'\nCHANGE='old-secret'\nDROP='gone-secret'\n"
    changes, diff = describe_change(old, {"KEEP": "same", "CHANGE": "new-secret", "ADD": "x"}, header="hdr")
    assert changes == {"added": ["ADD"], "removed": ["DROP"], "changed": ["CHANGE"]}
    assert diff["before"] == f"# hdr\nCHANGE={MASK}\nDROP={MASK}\nKEEP={MASK}\n"
    assert diff["after"] == f"# hdr\nADD={MASK}\nCHANGE={MASK} (changed)\nKEEP={MASK}\n"
    assert "secret" not in json.dumps(diff)


def test_describe_change_hides_comments_of_the_old_file():
    old = "# DB_PASSWORD=old-secret\nA='1'\n"
    _changes, diff = describe_change(old, {"A": "1"})
    assert "old-secret" not in diff["before"]
    assert diff["before"] == f"# (comments of the current file are not shown)\nA={MASK}\n"


def test_describe_change_unreadable_old_file():
    changes, diff = describe_change("A='unterminated-secret\n", {"A": "1"})
    assert changes == {"added": ["A"], "removed": [], "changed": []}
    assert "not a dotenv file" in diff["before"] and "unterminated-secret" not in diff["before"]
