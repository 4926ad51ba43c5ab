# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The error-rate watch of compose_deploy's verify window: nginx's JSON access log, read as it grows.

This is a private module_utils (leading underscore): no stable API.

A health endpoint can say ok while the API fails real requests. During the verify window the
deployer reads the lines nginx appended to the site's access log (the nginx role's ``ec2ops_json``
format: ``upstream_addr`` and ``upstream_status``) and counts, for the requests the new release's
containers answered, how many were 5xx. When at least ``min_requests`` were answered and more than
``max_percent`` of them failed, the release is judged bad, whatever its health endpoint says.

When nginx tried several servers for one request (``"a:8080, b:8080"``), the last one answered it.
A log rotated during the window (a smaller file, or another inode) is read again from its start.
"""

import json
import os


class ErrorWatch:
    """Counts the new release's answers in an nginx JSON access log from ``start()`` on."""

    def __init__(self, path, servers, max_percent=2.0, min_requests=50):
        self.path = path
        self.servers = set(servers)
        self.max_percent = max_percent
        self.min_requests = min_requests
        self.total = 0
        self.errors = 0
        self._offset = 0
        self._inode = None
        self._partial = b""

    def start(self):
        """From now on: what the log already holds is the old release's."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._offset, self._inode = 0, None
            return self
        self._offset, self._inode = stat.st_size, stat.st_ino
        return self

    def poll(self):
        """Read what was appended; ``(ok, detail)``, not ok once the 5xx rate is over the limit."""
        self._read()
        return (not self.failing()), self.describe()

    def failing(self):
        return self.total >= self.min_requests and self.errors * 100.0 > self.max_percent * self.total

    def describe(self):
        rate = 100.0 * self.errors / self.total if self.total else 0.0
        text = (
            f"{rate:.1f}% of its requests failed with 5xx ({self.errors} of {self.total} through nginx; "
            f"limit {self.max_percent:g}% over at least {self.min_requests} requests)"
        )
        if self.total < self.min_requests:
            text += ": too few to judge"
        return text

    def _read(self):
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if self._inode is not None and (stat.st_ino != self._inode or stat.st_size < self._offset):
                    self._offset, self._partial = 0, b""  # rotated: the new file holds only new lines
                self._inode = stat.st_ino
                handle.seek(self._offset)
                data = handle.read(16 * 1024 * 1024)
                self._offset += len(data)
        except FileNotFoundError:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._count(line)

    def _count(self, line):
        try:
            entry = json.loads(line)
        except ValueError:
            return
        if not isinstance(entry, dict):
            return
        addresses = [a.strip() for a in str(entry.get("upstream_addr") or "").replace(" : ", ",").split(",")]
        statuses = [s.strip() for s in str(entry.get("upstream_status") or "").replace(" : ", ",").split(",")]
        if not addresses or addresses[-1] not in self.servers:
            return
        status = statuses[-1] if statuses and statuses[-1] else str(entry.get("status", ""))
        self.total += 1
        if status.startswith("5"):
            self.errors += 1
