# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A per-project deploy lock that says who holds it.

This is a private module_utils (leading underscore): no stable API.

``flock`` on ``<project_dir>/.ec2ops/deploy.lock``: the kernel releases it when the holder
dies, so a killed deploy never leaves a stale lock. The holder writes who it is (user,
pid, release, start time) into the file, and a refused deploy names it.
"""

import errno
import fcntl
import json
import os
import time

# Seconds any run waits for a holder that says nothing about itself (a short upstream re-sync).
ANONYMOUS_GRACE = 15


class LockHeld(Exception):
    """Another deploy holds the lock; ``holder`` is what it wrote (a dict, maybe empty)."""

    def __init__(self, path, holder, waited):
        self.path = path
        self.holder = holder
        self.waited = waited
        who = holder.get("user", "?")
        what = holder.get("release", "?")
        since = holder.get("started", "?")
        pid = holder.get("pid", "?")
        super().__init__(
            f"another deploy of this project is running (user {who}, release {what}, pid {pid}, since {since}); "
            f"waited {waited:.0f}s for {path}. Let it finish, or raise lock_timeout to wait for it."
        )


class DeployLock:
    def __init__(self, path, timeout=0, clock=time.monotonic, sleep=time.sleep):
        self.path = path
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._fd = None

    def acquire(self, holder):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        try:
            # Never through a link someone planted: O_CREAT would create or truncate where it points.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(
                    exc.errno, f"{self.path} is a symbolic link: refusing to lock through it; remove the link"
                ) from None
            raise
        start = self._clock()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = self._clock() - start
                current = _read_holder(fd)
                # A holder that wrote nothing is ec2ops-upstream-sync re-pointing nginx for a moment.
                limit = self.timeout if current else max(self.timeout, ANONYMOUS_GRACE)
                if waited >= limit:
                    os.close(fd)
                    raise LockHeld(self.path, current, waited) from None
                self._sleep(min(1.0, max(0.05, limit - waited)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder, sort_keys=True).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd):
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data.decode() or "{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}
