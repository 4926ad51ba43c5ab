"""Unit tests for the atomic file writer: a failure at any step leaves the previous file intact."""

import os
import stat

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils import _atomic_file
from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import (
    FileAttributeError,
    UnsafePathError,
    attribute_differences,
    parse_mode,
    private_directory,
    read_current,
    refuse_link,
    resolve_gid,
    resolve_uid,
    set_attributes,
    target_ownership,
    write_atomic,
)

# Selected by `pytest -k dotenv` with the rest of the secrets_dotenv tests.
pytestmark = pytest.mark.secrets_dotenv


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("0600", 0o600),
        ("600", 0o600),
        ("0o640", 0o640),
        ("2750", 0o2750),
        (0o600, 0o600),
        (384, 0o600),
        (" 0644 ", 0o644),
    ],
)
def test_parse_mode(mode, expected):
    assert parse_mode(mode) == expected


@pytest.mark.parametrize("mode", ["u=rw", "0800", "12", "", None, True, -1, 0o10000, 6.0])
def test_parse_mode_rejects(mode):
    with pytest.raises(FileAttributeError):
        parse_mode(mode)


def test_resolve_owner_and_group():
    assert resolve_uid(None) is None and resolve_gid("") is None
    assert resolve_uid("root") == 0 and resolve_gid("root") == 0
    assert resolve_uid("12345") == 12345 and resolve_gid(12345) == 12345
    with pytest.raises(FileAttributeError, match="owner 'no-such-user-x' does not exist"):
        resolve_uid("no-such-user-x")
    with pytest.raises(FileAttributeError, match="group 'no-such-group-x' does not exist"):
        resolve_gid("no-such-group-x")


def test_read_current(tmp_path):
    assert read_current(tmp_path / "missing") == (None, None)
    (tmp_path / "f").write_bytes(b"x")
    data, st = read_current(tmp_path / "f")
    assert data == b"x" and st.st_size == 1


def test_write_new_file_with_mode(tmp_path):
    dest = tmp_path / ".env"
    write_atomic(str(dest), b"A='1'\n", 0o640)
    assert dest.read_bytes() == b"A='1'\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == [".env"]


def test_write_replaces_atomically(tmp_path):
    dest = tmp_path / ".env"
    dest.write_bytes(b"old")
    inode = dest.stat().st_ino
    write_atomic(str(dest), b"new" * 100000, 0o600)
    assert dest.read_bytes() == b"new" * 100000
    assert dest.stat().st_ino != inode  # a new file was renamed over the old one


def test_mode_is_set_before_any_content(tmp_path, monkeypatch):
    seen = []
    real_write = os.write

    def spy_write(fd, data):
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(_atomic_file.os, "write", spy_write)
    write_atomic(str(tmp_path / ".env"), b"secret", 0o600)
    assert seen and set(seen) == {0o600}


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(_atomic_file.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    write_atomic(str(tmp_path / ".env"), b"0123456789", 0o600)
    assert (tmp_path / ".env").read_bytes() == b"0123456789"


@pytest.mark.parametrize("step", ["fchmod", "write", "fsync", "replace"])
def test_failure_at_any_step_keeps_the_old_file(tmp_path, monkeypatch, step):
    dest = tmp_path / ".env"
    dest.write_bytes(b"A='old'\n")
    before = (dest.read_bytes(), dest.stat().st_ino, dest.stat().st_mtime_ns)
    calls = []

    def fail(*args, **kwargs):
        calls.append(step)
        raise OSError(28, "No space left on device")

    if step == "write":
        real_write = os.write

        def fail_half_way(fd, data):  # write a part, then fail
            if calls:
                fail()
            calls.append("partial")
            return real_write(fd, bytes(data[: len(data) // 2]))

        monkeypatch.setattr(_atomic_file.os, "write", fail_half_way)
    else:
        monkeypatch.setattr(_atomic_file.os, step, fail)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(str(dest), b"A='new'\n" * 1000, 0o600)
    assert (dest.read_bytes(), dest.stat().st_ino, dest.stat().st_mtime_ns) == before
    assert os.listdir(tmp_path) == [".env"]  # the temporary file is gone


def test_interrupt_also_cleans_up(tmp_path, monkeypatch):
    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic_file.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(str(tmp_path / ".env"), b"x", 0o600)
    assert os.listdir(tmp_path) == []


def test_ownership_is_applied_before_content(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr(_atomic_file.os, "fchown", lambda fd, uid, gid: order.append(("fchown", uid, gid)))
    real_fchmod, real_write = os.fchmod, os.write
    monkeypatch.setattr(_atomic_file.os, "fchmod", lambda fd, mode: order.append("fchmod") or real_fchmod(fd, mode))
    monkeypatch.setattr(_atomic_file.os, "write", lambda fd, data: order.append("write") or real_write(fd, data))
    write_atomic(str(tmp_path / ".env"), b"x", 0o600, 1234, 5678)
    assert order[:3] == [("fchown", 1234, 5678), "fchmod", "write"]


def test_no_chown_when_not_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(_atomic_file.os, "fchown", lambda *a: pytest.fail("fchown called"))
    write_atomic(str(tmp_path / ".env"), b"x", 0o600, -1, -1)


class FakeStat:
    def __init__(self, mode=0o100600, uid=10, gid=20):
        self.st_mode, self.st_uid, self.st_gid = mode, uid, gid


def test_target_ownership(monkeypatch):
    monkeypatch.setattr(_atomic_file.os, "geteuid", lambda: 0)
    assert target_ownership(None, None, None) == (-1, -1)
    assert target_ownership(FakeStat(), None, None) == (10, 20)  # a replaced file keeps owner and group
    assert target_ownership(FakeStat(), 1, None) == (1, 20)
    monkeypatch.setattr(_atomic_file.os, "geteuid", lambda: 1000)
    assert target_ownership(FakeStat(), None, None) == (-1, -1)  # only root can give files away


def test_attribute_differences():
    assert attribute_differences(FakeStat(), 0o600, None, None) == []
    assert attribute_differences(FakeStat(), 0o640, 10, 20) == ["mode"]
    assert attribute_differences(FakeStat(), 0o600, 11, 21) == ["owner", "group"]


def test_set_attributes(tmp_path):
    dest = tmp_path / "f"
    dest.write_bytes(b"x")
    set_attributes(str(dest), 0o640, None, None)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    st = dest.stat()
    set_attributes(str(dest), 0o600, st.st_uid, st.st_gid)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_reads_and_attribute_fixes_never_follow_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret\n")
    victim.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        read_current(str(link))
    with pytest.raises(OSError):
        set_attributes(str(link), 0o600, None, None)
    assert victim.stat().st_mode & 0o777 == 0o640
    with pytest.raises(UnsafePathError, match="is a symbolic link"):
        refuse_link(str(link), "dest")
    refuse_link(str(victim), "dest")  # a plain file is fine


def test_a_private_directory_is_made_or_refused(tmp_path):
    made = tmp_path / "project" / ".ec2ops"
    private_directory(str(made), "state")
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "planted"
    planted.symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match=r"state .*planted is a symbolic link"):
        private_directory(str(planted), "state")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(UnsafePathError, match="is not a directory"):
        private_directory(str(a_file), "state")
