"""ec2ops.stack.secrets_dotenv through ansible-playbook against a real moto server process."""

import base64
import json
import os
import pathlib
import stat
import sys
import uuid

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import parse

HERE = pathlib.Path(__file__).parent / "secrets_dotenv"
PLAYBOOK = HERE / "render_env.yml"
TASK = "Write the .env file"
HARD_CASES = json.loads((HERE / "hard_cases.json").read_text())
OPTIONS = (
    "env",
    "owner",
    "group",
    "mode",
    "backup",
    "header",
    "follow",
    "files",
    "region",
    "endpoint_url",
    "aws_config",
)


@pytest.fixture
def secrets(moto_server):
    """Create secrets under a per-test prefix: ``secrets.create("db", {"K": "v"})`` returns the name."""

    class Secrets:
        client = moto_server.client("secretsmanager")
        prefix = f"t-{uuid.uuid4().hex[:8]}/"

        def create(self, name, value=None, binary=None):
            kwargs = {"Name": self.prefix + name}
            if binary is not None:
                kwargs["SecretBinary"] = binary
            else:
                kwargs["SecretString"] = value if isinstance(value, str) else json.dumps(value)
            self.client.create_secret(**kwargs)
            return self.prefix + name

        def update(self, name, value):
            self.client.put_secret_value(
                SecretId=name, SecretString=value if isinstance(value, str) else json.dumps(value)
            )

    return Secrets()


@pytest.fixture
def render(ansible_playbook, moto_server, tmp_path):
    """Run the module once: ``render(secrets_list, dest=..., env=..., check=..., diff=..., verbosity=...)``."""

    def run(secret_list, dest=None, extra_vars=None, **options):
        extra = {
            **(extra_vars or {}),
            "sd_endpoint_url": moto_server.endpoint_url,
            "sd_secrets": secret_list,
            "sd_dest": str(dest or tmp_path / ".env"),
        }
        for option in OPTIONS:
            if option in options:
                extra[f"sd_{option}"] = options.pop(option)
        return ansible_playbook(PLAYBOOK, extra_vars=extra, **options)

    return run


def file_state(path):
    st = os.stat(path)
    return path.read_bytes(), st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode)


def test_compose_reads_exactly_what_was_stored(render, secrets, tmp_path, compose_config):
    app = secrets.create("app", HARD_CASES)
    pem = secrets.create("pem", HARD_CASES["PEM"])
    legacy = secrets.create("legacy", "# from `get-secret-value > .env`\nexport A=1\nB='two words'\nC=\"x\\ny\"\n")
    run = render(
        [app, {"id": pem, "name": "TLS_KEY"}, {"id": legacy, "format": "dotenv", "prefix": "LEGACY_"}],
        env={"SPRING_PROFILES_ACTIVE": "prod"},
        header="Managed by Ansible",
    )
    result = run.task(TASK)
    assert run.rc == 0 and result["changed"], run.output
    expected = dict(HARD_CASES, TLS_KEY=HARD_CASES["PEM"], SPRING_PROFILES_ACTIVE="prod")
    expected.update(LEGACY_A="1", LEGACY_B="two words", LEGACY_C="x\ny")
    assert result["variables"] == sorted(expected)
    assert result["api_calls"] == 1  # one BatchGetSecretValue for three secrets

    names = sorted(expected)
    services = {
        "envfile": {"image": "busybox", "env_file": [".env"]},
        "interp": {"image": "busybox", "environment": {name: "${" + name + "}" for name in names}},
    }
    (tmp_path / "compose.yml").write_text(json.dumps({"services": services}))
    config = compose_config(tmp_path)
    assert config["services"]["envfile"]["environment"] == expected
    assert config["services"]["interp"]["environment"] == expected


def test_no_value_in_output_at_vvv(render, secrets, tmp_path):
    marker = uuid.uuid4().hex
    values = {
        "PASSWORD": f"pw-{marker}-1 $x 'q' \"d\" \\ #",
        "TOKEN": f"tok-{marker}-2",
        "MULTILINE": f"line1-{marker}-3\nline2-{marker}-4\n",
        "JSON_IN_VALUE": f'{{"inner": "v-{marker}-5"}}',
    }
    app = secrets.create("app", values)
    pem = secrets.create("pem", f"-----BEGIN-----\nk-{marker}-6\n-----END-----\n")
    bad = secrets.create("bad", {"ok": f"ok-{marker}-7", "bad-name": f"bad-{marker}-8"})
    dest = tmp_path / ".env"
    verbose = {"diff": True, "verbosity": 3, "json_output": False}
    runs = [render([app, {"id": pem, "name": "TLS_KEY"}], env={"STATIC": "not-secret"}, **verbose)]
    secrets.update(app, dict(values, TOKEN=f"tok-{marker}-9"))
    runs.append(render([app, {"id": pem, "name": "TLS_KEY"}], check=True, **verbose))
    runs.append(render([app, bad, "missing-" + marker[:4]], **verbose))

    assert runs[0].rc == 0 and runs[1].rc == 0 and runs[2].rc != 0, [r.output[-3000:] for r in runs]
    assert f"pw-{marker}-1" in dest.read_text()  # the values really went through the module
    assert "TOKEN=********" in runs[1].output  # the diff is shown, masked
    assert "key 'bad-name' is not a valid variable name" in runs[2].output
    output = "".join(r.output for r in runs)
    for n in range(1, 10):
        assert f"-{marker}-{n}" not in output, f"value {n} leaked"
    for value in values.values():
        assert value not in output


def test_check_mode_and_idempotence(render, secrets, tmp_path):
    app = secrets.create("app", {"A": "1", "PEM": "a\nb"})
    dest = tmp_path / ".env"
    # Check mode on a new file: reports the change, writes nothing.
    result = render([app], check=True, header="hdr").task(TASK)
    assert result["changed"] and result["changes"]["added"] == ["A", "PEM"]
    assert not dest.exists()

    assert render([app], header="hdr").task(TASK)["changed"]
    before = file_state(dest)
    assert before[3] == 0o600
    # Second run: nothing to do, the file is not rewritten (same inode and mtime).
    second = render([app], header="hdr").task(TASK)
    assert not second["changed"]
    assert second["changes"] == {"added": [], "removed": [], "changed": [], "attributes": []}
    assert file_state(dest) == before

    # A wrong mode alone is fixed in place.
    dest.chmod(0o644)
    third = render([app], header="hdr").task(TASK)
    assert third["changed"] and third["changes"]["attributes"] == ["mode"]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600 and os.stat(dest).st_ino == before[1]
    before = file_state(dest)

    # Check mode on a changed secret: reports which key changes, leaves the file alone.
    secrets.update(app, {"A": "2", "PEM": "a\nb"})
    result = render([app], check=True, diff=True, header="hdr").task(TASK)
    assert result["changed"] and result["changes"]["changed"] == ["A"]
    assert file_state(dest) == before
    assert list(tmp_path.iterdir()) == [dest]


def test_diff_is_masked_and_names_changes(render, secrets, tmp_path):
    app = secrets.create("app", {"KEEP": "same-value", "CHANGE": "old-value", "DROP": "dropped-value"})
    assert render([app], header="hdr").rc == 0
    secrets.update(app, {"KEEP": "same-value", "CHANGE": "new-value", "ADD": "added-value"})
    result = render([app], diff=True, header="hdr").task(TASK)
    assert result["changes"] == {"added": ["ADD"], "removed": ["DROP"], "changed": ["CHANGE"], "attributes": []}
    diff = result["diff"]
    assert diff["before"] == "# hdr\nCHANGE=********\nDROP=********\nKEEP=********\n"
    assert diff["after"] == "# hdr\nADD=********\nCHANGE=******** (changed)\nKEEP=********\n"
    assert "value" not in json.dumps(result)


def test_missing_deleted_and_optional_secrets(render, secrets, tmp_path):
    app = secrets.create("app", {"A": "1"})
    missing = secrets.prefix + "missing"
    gone = secrets.create("gone", {"B": "2"})
    secrets.client.delete_secret(SecretId=gone, RecoveryWindowInDays=7)
    run = render([app, missing, gone])
    assert run.rc != 0
    msg = run.task(TASK)["msg"]
    assert msg.startswith("2 of 3 secret(s) cannot be used")
    assert f"secret '{missing}' does not exist (ResourceNotFoundException) in region us-east-1" in msg
    assert f"secret '{gone}' is deleted or scheduled for deletion" in msg
    assert not (tmp_path / ".env").exists()

    run = render([app, {"id": missing, "optional": True}, {"id": gone, "optional": True}])
    result = run.task(TASK)
    assert run.rc == 0 and result["variables"] == ["A"]
    assert result["secrets"][1:] == [
        {"id": missing, "found": False, "reason": "missing"},
        {"id": gone, "found": False, "reason": "deleted"},
    ]
    assert any(f"optional secret '{missing}' does not exist" in w for w in result["warnings"])
    assert any(f"optional secret '{gone}' is deleted" in w for w in result["warnings"])


def test_every_broken_secret_is_named_without_values(render, secrets, tmp_path):
    broken = {
        "array": secrets.create("array", "[1, 2]"),
        "malformed": secrets.create("malformed", '{"A": "leak-1"'),
        "badkey": secrets.create("badkey", {"bad-name": "leak-2"}),
        "nested": secrets.create("nested", {"A": {"leak": "leak-3"}}),
        "null": secrets.create("null", {"A": None}),
        "binary": secrets.create("binary", binary=b"leak-4\x00\xff"),
        "plaintext": secrets.create("plaintext", "leak-5 plain text"),
    }
    dest = tmp_path / ".env"
    dest.write_text("OLD='1'\n")
    run = render(list(broken.values()))
    assert run.rc != 0
    msg = run.task(TASK)["msg"]
    assert msg.startswith("7 of 7 secret(s) cannot be used")
    assert f"secret '{broken['array']}' holds JSON that is not an object (an array)" in msg
    assert f"secret '{broken['malformed']}' is not valid JSON (line 1 column 15)" in msg
    assert f"secret '{broken['badkey']}': key 'bad-name' is not a valid variable name" in msg
    assert f"secret '{broken['nested']}': key 'A' holds an object" in msg
    assert f"secret '{broken['null']}': key 'A' holds null" in msg
    assert f"secret '{broken['binary']}' is binary (SecretBinary)" in msg
    assert f"secret '{broken['plaintext']}' is not valid JSON" in msg
    assert "leak" not in run.output
    assert dest.read_text() == "OLD='1'\n"


def test_entry_options(render, secrets, tmp_path):
    db = secrets.create("db", {"host": "db.local", "password": "pw", "unused": "x"})
    cfg = secrets.create("cfg", '{"LIMITS": {"cpu": 2, "pi": 3.140}, "RATIO": 1.10, "ON": true}')
    blob = secrets.create("blob", binary=b"\x00\x01binary")
    text_blob = secrets.create("textblob", binary=json.dumps({"FROM_BINARY": "yes"}).encode())
    dotenv = secrets.create("dotenv", "X=1\nY=${X}-2\nZ='${X}'\n")
    versioned = secrets.create("versioned", {"V": "first"})
    secrets.update(versioned, {"V": "second"})
    run = render(
        [
            {"id": db, "keys": {"host": "DB_HOST", "password": "DB_PASSWORD"}},
            {"id": cfg, "nested": "json", "prefix": "APP_"},
            {"id": blob, "binary": "base64", "name": "BLOB"},
            {"id": text_blob, "binary": "text"},
            {"id": dotenv, "format": "dotenv", "keys": ["Y", "Z"]},
            {"id": versioned, "version_stage": "AWSPREVIOUS"},
        ]
    )
    result = run.task(TASK)
    assert run.rc == 0, run.output
    assert parse((tmp_path / ".env").read_text()) == {
        "APP_LIMITS": '{"cpu":2,"pi":3.140}',
        "APP_ON": "true",
        "APP_RATIO": "1.10",
        "BLOB": base64.b64encode(b"\x00\x01binary").decode(),
        "DB_HOST": "db.local",
        "DB_PASSWORD": "pw",
        "FROM_BINARY": "yes",
        "V": "first",
        "Y": "1-2",
        "Z": "${X}",
    }
    previous = result["secrets"][-1]
    assert previous["version_stages"] == ["AWSPREVIOUS"] and previous["version_id"]
    assert result["api_calls"] == 2  # one batch for five secrets, one GetSecretValue for the pinned version


def test_precedence_and_override_warning(render, secrets, tmp_path):
    base = secrets.create("base", {"A": "base", "B": "base", "C": "base"})
    prod = secrets.create("prod", {"B": "prod", "C": "prod"})
    run = render([base, prod], env={"C": "env", "D": "env"})
    result = run.task(TASK)
    assert parse((tmp_path / ".env").read_text()) == {"A": "base", "B": "prod", "C": "env", "D": "env"}
    assert result["overridden"] == ["B", "C"]
    [warning] = [w for w in result["warnings"] if "more than one source" in w]
    assert f"B (secret '{base}' overridden by secret '{prod}')" in warning
    assert f"C (secret '{base}' overridden by secret '{prod}'); C (secret '{prod}' overridden by env)" in warning
    assert "base" not in warning.replace(base, "") and "prod'" not in warning.replace(prod + "'", "")


def test_failure_leaves_previous_file_untouched(render, secrets, tmp_path):
    app = secrets.create("app", {"A": "1"})
    dest = tmp_path / ".env"
    assert render([app]).rc == 0
    before = file_state(dest)

    # A failure while reading: nothing is written.
    assert render([app, secrets.prefix + "missing"]).rc != 0
    assert file_state(dest) == before

    # A failure in the middle of writing: the module's Python may not write more than 512 KiB to any file
    # (enough for Ansible's own module payload, not for these 10 x 60 KB secrets).
    big = [secrets.create(f"big{i}", {f"BIG{i}": "x" * 60000}) for i in range(10)]
    limited_python = tmp_path.parent / f"{tmp_path.name}-python"
    limited_python.write_text(
        f"#!{sys.executable}\n"
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    )
    limited_python.chmod(0o755)
    run = render([app, *big], extra_vars={"ansible_python_interpreter": str(limited_python)})
    assert run.rc != 0, run.output
    assert f"cannot write {dest}: File too large; the previous file is unchanged" in run.task(TASK)["msg"]
    assert file_state(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]  # no temporary file left behind


def test_batches_of_twenty(render, secrets):
    names = [secrets.create(f"s{i:02d}", {f"K{i}": str(i)}) for i in range(25)]
    result = render([*names, {"id": names[0], "version_stage": "AWSCURRENT", "prefix": "PINNED_"}]).task(TASK)
    assert len(result["variables"]) == 26
    assert result["api_calls"] == 3  # 20 + 5 in two batches, one GetSecretValue for the pinned entry


def test_unreachable_endpoint_and_wrong_region(render, secrets):
    app = secrets.create("app", {"A": "1"})
    run = render([app], endpoint_url="http://127.0.0.1:9", aws_config={"retries": {"max_attempts": 1}})
    assert run.rc != 0
    msg = run.task(TASK)["msg"]
    assert "cannot reach Secrets Manager (region us-east-1 at http://127.0.0.1:9)" in msg

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + app + "-AbCdEf"
    msg = render([arn]).task(TASK)["msg"]
    assert f"secret '{arn}' is an ARN in region eu-west-1, but the module uses region us-east-1" in msg


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the file to another user")
def test_owner_group_mode_and_backup(render, secrets, tmp_path):
    app = secrets.create("app", {"A": "1"})
    dest = tmp_path / ".env"
    assert render([app], owner="nobody", group="daemon", mode="0640").rc == 0
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 1, 0o640)

    old = dest.read_bytes()
    secrets.update(app, {"A": "2"})
    result = render([app], backup=True, mode="0640").task(TASK)
    assert pathlib.Path(result["backup_file"]).read_bytes() == old
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid) == (65534, 1)  # a replaced file keeps its owner and group


def test_a_dest_planted_as_a_symlink_is_refused_and_its_target_untouched(render, secrets, tmp_path):
    """Issue 20: an app owner links .env to a file root may write (as /etc/shadow); root must not follow it."""
    app = secrets.create("app", {"A": "1"})
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_text("root:$6$hash:19000:0:99999:7:::\n")
    victim.chmod(0o640)
    before = file_state(victim)
    dest = tmp_path / ".env"
    dest.symlink_to(victim)
    for mode in ("0600", "0640"):  # a content change, and an attributes-only change
        run = render([app], dest=dest, mode=mode, owner="nobody")
        assert run.rc != 0
        assert f"dest {dest} is a symbolic link (to {victim})" in run.task(TASK)["msg"]
        assert file_state(victim) == before and os.stat(victim).st_uid == os.getuid()
    # Asked for explicitly, a link of one's own is written through.
    assert render([app], dest=dest, follow=True).rc == 0
    assert victim.read_text() != before[0].decode() and dest.is_symlink()


def test_key_files_from_a_secret_are_written_apart_from_the_env(render, secrets, tmp_path):
    """Issue 16: the table-order seed's FastAPI service mounts its RS256 key pair from ./keys."""
    marker = uuid.uuid4().hex
    private = f"-----BEGIN PRIVATE KEY-----\nMIIE{marker}\n-----END PRIVATE KEY-----"
    public = f"-----BEGIN PUBLIC KEY-----\nMIIB{marker}\n-----END PUBLIC KEY-----\n"
    app = secrets.create("jwt", {"JWT_PRIVATE_KEY": private, "JWT_PUBLIC_KEY": public, "JWT_ALG": "RS256"})
    (tmp_path / "keys").mkdir()
    files = [
        {"variable": "JWT_PRIVATE_KEY", "path": "keys/jwt_private.pem"},
        {"variable": "JWT_PUBLIC_KEY", "path": str(tmp_path / "keys" / "jwt_public.pem"), "mode": "0444"},
    ]
    # Check mode first: nothing written, the change announced.
    preview = render([app], files=files, check=True, diff=True, verbosity=3, json_output=False)
    assert preview.rc == 0 and not (tmp_path / "keys" / "jwt_private.pem").exists(), preview.output[-3000:]
    run = render([app], files=files, diff=True)
    assert run.rc == 0, run.output
    result = run.task(TASK)
    assert [f["changed"] for f in result["files"]] == [True, True]
    key = tmp_path / "keys" / "jwt_private.pem"
    assert key.read_text() == private + "\n" and stat.S_IMODE(key.stat().st_mode) == 0o400
    assert (tmp_path / "keys" / "jwt_public.pem").read_text() == public
    assert stat.S_IMODE((tmp_path / "keys" / "jwt_public.pem").stat().st_mode) == 0o444
    # Out of the .env (a PEM there helps nobody), the other keys stay.
    assert (tmp_path / ".env").read_text() == "JWT_ALG='RS256'\n"
    assert marker not in run.output and marker not in preview.output
    again = render([app], files=files).task(TASK)
    assert again["changed"] is False and [f["changed"] for f in again["files"]] == [False, False]
    # A rotated key: only that file changes.
    secrets.update(
        app, {"JWT_PRIVATE_KEY": private.replace("MIIE", "MIIF"), "JWT_PUBLIC_KEY": public, "JWT_ALG": "RS256"}
    )
    rotated = render([app], files=files).task(TASK)
    assert [f["changed"] for f in rotated["files"]] == [True, False]
    assert "MIIF" in key.read_text()


def test_key_file_mistakes_are_named_and_change_nothing(render, secrets, tmp_path):
    app = secrets.create("jwt", {"JWT_PRIVATE_KEY": "k" * 40})
    for files, message in (
        ([{"variable": "NOPE", "path": "key.pem"}], "files: no secret gives NOPE"),
        ([{"variable": "JWT_PRIVATE_KEY", "path": "../key.pem"}], "a relative path stays beside dest"),
        ([{"variable": "JWT_PRIVATE_KEY", "path": "missing/key.pem"}], "the directory of"),
        ([{"variable": "JWT_PRIVATE_KEY"}], "files[0] needs variable"),
    ):
        run = render([app], files=files)
        assert run.rc != 0 and message in run.output, run.output[-2000:]
        assert "k" * 40 not in run.output
        assert not (tmp_path / ".env").exists()
