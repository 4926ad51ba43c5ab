"""Key files from secrets (secrets_dotenv's files option): checking entries and planning the writes."""

import os

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import UnsafePathError
from ansible_collections.ec2ops.stack.plugins.module_utils._secret_files import (
    SecretFilesError,
    normalize_files,
    plan_files,
)


def test_entries_get_defaults_and_relative_paths_sit_beside_dest(tmp_path):
    dest = tmp_path / ".env"
    (entry,) = normalize_files([{"variable": "KEY", "path": "keys/a.pem"}], str(dest))
    assert entry == {"variable": "KEY", "path": str(tmp_path / "keys" / "a.pem"), "mode": 0o400, "keep": False}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("keys", "files is a list"),
        ([{"path": "a.pem"}], "files[0] needs variable"),
        ([{"variable": "K", "path": "../a.pem"}], "no '..'"),
        ([{"variable": "K", "path": "a.pem"}, {"variable": "L", "path": "a.pem"}], "each file once"),
        ([{"variable": "K", "path": ".env"}], "not dest itself"),
        ([{"variable": "K", "path": "a.pem", "mode": "rw"}], "files[0].mode"),
        ([{"variable": "K", "path": "a.pem", "owner": "x"}], "unknown option(s) owner"),
    ],
)
def test_bad_entries_are_named(tmp_path, files, message):
    with pytest.raises(SecretFilesError) as info:
        normalize_files(files, str(tmp_path / ".env"))
    assert message in str(info.value)


def test_plan_takes_the_value_out_of_the_env_and_adds_the_final_new_line(tmp_path):
    files = normalize_files(
        [{"variable": "KEY", "path": "k.pem"}, {"variable": "PUB", "path": "p.pem", "keep_in_env": True}],
        str(tmp_path / ".env"),
    )
    variables = {"KEY": "-----BEGIN-----\nabc\n-----END-----", "PUB": "pub\n", "OTHER": "x"}
    plans = plan_files(files, variables)
    assert [(p[1], p[2]) for p in plans] == [(b"-----BEGIN-----\nabc\n-----END-----\n", True), (b"pub\n", True)]
    assert variables == {"PUB": "pub\n", "OTHER": "x"}
    (tmp_path / "k.pem").write_bytes(b"-----BEGIN-----\nabc\n-----END-----\n")
    os.chmod(tmp_path / "k.pem", 0o400)
    assert plan_files(files, {"KEY": "-----BEGIN-----\nabc\n-----END-----", "PUB": "pub\n"})[0][2] is False
    os.chmod(tmp_path / "k.pem", 0o644)  # a mode that drifted is a change
    assert plan_files(files, {"KEY": "-----BEGIN-----\nabc\n-----END-----", "PUB": "pub\n"})[0][2] is True


def test_a_missing_variable_or_a_planted_link_is_refused_without_the_value(tmp_path):
    files = normalize_files([{"variable": "KEY", "path": "k.pem"}], str(tmp_path / ".env"))
    with pytest.raises(SecretFilesError, match="no secret gives KEY"):
        plan_files(files, {"OTHER": "secret-value"})
    os.symlink("/etc/passwd", tmp_path / "k.pem")
    with pytest.raises(UnsafePathError) as info:
        plan_files(files, {"KEY": "secret-value"})
    assert "secret-value" not in str(info.value)
