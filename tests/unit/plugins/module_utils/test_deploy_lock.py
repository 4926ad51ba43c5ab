import fcntl
import json

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._deploy_lock import ANONYMOUS_GRACE, DeployLock, LockHeld


def test_lock_records_the_holder_and_releases(tmp_path):
    path = tmp_path / ".ec2ops" / "deploy.lock"
    lock = DeployLock(str(path)).acquire({"user": "alice", "release": "v1"})
    assert json.loads(path.read_text()) == {"release": "v1", "user": "alice"}
    assert path.stat().st_mode & 0o777 == 0o600
    lock.release()
    assert path.read_text() == ""
    DeployLock(str(path)).acquire({"user": "bob"}).release()


def test_a_held_lock_is_refused_naming_the_holder_after_the_timeout(tmp_path):
    path = tmp_path / "deploy.lock"
    first = DeployLock(str(path)).acquire({"user": "alice", "release": "v7", "pid": 42, "started": "t0"})
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(LockHeld) as info:
        DeployLock(str(path), timeout=3, clock=lambda: now[0], sleep=sleep).acquire({"user": "bob"})
    assert "user alice, release v7, pid 42, since t0" in str(info.value)
    assert "waited 3s" in str(info.value) and sum(sleeps) >= 3
    first.release()


def test_the_kernel_releases_the_lock_of_a_dead_holder(tmp_path):
    path = tmp_path / "deploy.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
    # The file was closed (as when the holder dies): the lock is free again.
    DeployLock(str(path)).acquire({"user": "bob"}).release()


def test_a_holder_that_says_nothing_gets_a_grace_period_even_with_timeout_0(tmp_path):
    """ec2ops-upstream-sync holds the lock for a moment without writing who it is: a deploy waits."""
    path = tmp_path / "deploy.lock"
    path.write_text("")
    now = [0.0]
    with open(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)

        def sleep(seconds):
            now[0] += seconds

        with pytest.raises(LockHeld) as info:
            DeployLock(str(path), timeout=0, clock=lambda: now[0], sleep=sleep).acquire({"user": "bob"})
        assert info.value.waited >= ANONYMOUS_GRACE
    # A holder that names itself is refused at once with timeout 0.
    first = DeployLock(str(path)).acquire({"user": "alice"})
    now[0] = 0.0
    with pytest.raises(LockHeld) as info:
        DeployLock(str(path), timeout=0, clock=lambda: now[0], sleep=sleep).acquire({"user": "bob"})
    assert info.value.waited == 0
    first.release()


def test_a_lock_file_planted_as_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    """Issue 20: the app owner links deploy.lock to a file root may write; O_CREAT would truncate it."""
    victim = tmp_path / "victim"
    victim.write_text("root:secret-hash:19000::::::\n")
    state = tmp_path / ".ec2ops"
    state.mkdir()
    (state / "deploy.lock").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        DeployLock(str(state / "deploy.lock")).acquire({"user": "alice"})
    assert victim.read_text() == "root:secret-hash:19000::::::\n"
