# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release history of one Compose project: what ran, with which images, files and secrets.

This is a private module_utils (leading underscore): no stable API.

The history lives in ``<project_dir>/.ec2ops/history.json``, a readable JSON document::

    {"format": 2, "current": "v42", "releases": [{...oldest...}, ..., {...newest...}]}

Each record is one *attempt* to deploy a release: the release id, the attempt number and its
``key`` (the release id for the first attempt, ``<id>+<n>`` for the n-th, so a re-deploy of
the same id never replaces the record or the files of an earlier one), when and by whom, its
result, per service the image asked for and the pinned reference that ran, the sha256 of every
compose and env file (the files themselves are kept under ``.ec2ops/releases/<key>/``), and the
secret versions it ran with. ``current`` is the key of the record that serves.

Results: ``in_progress`` (written before the first change: the journal), ``deployed``,
``failed`` and ``interrupted`` (a run that died; the next run finds it and repairs the host).
``keep`` counts deployed records only; failed and interrupted ones are kept apart, at most
``keep_failed`` of them, so failed retries never push a good release out.

Format 1 (one record per release id) is read as format 2: its keys are the release ids.
"""

import hashlib
import json
import os
import re

from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import write_atomic

HISTORY_FORMAT = 2
READABLE_FORMATS = (1, 2)
RELEASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
KEY_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,127})(?:\+([1-9][0-9]{0,5}))?\Z")
GOOD = "deployed"
IN_PROGRESS = "in_progress"
FAILED_RESULTS = ("failed", "interrupted")


class HistoryError(Exception):
    """The history file or a release id cannot be used; the message says why."""


def validate_release_id(release):
    if not isinstance(release, str) or not RELEASE_ID_RE.match(release):
        raise HistoryError(
            f"release {release!r} is not a valid release id: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (a git sha or tag works)"
        )
    if release in ("previous", "current"):
        raise HistoryError(f"release id {release!r} is reserved; name the release after a git sha or tag")
    return release


def attempt_key(release, attempt):
    """The record key (and snapshot directory name) of an attempt: ``v1``, then ``v1+2``, ``v1+3`` ..."""
    return release if attempt == 1 else f"{release}+{attempt}"


def content_digest(parts):
    """sha256 over named byte strings: ``[(name, bytes), ...]``, order-independent by name."""
    digest = hashlib.sha256()
    for name, data in sorted(parts):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def default_release_id(images, files_digest):
    """A release id that is the same for the same images and files, so a re-run changes nothing."""
    parts = [(f"image:{svc}", ref.encode()) for svc, ref in sorted(images.items())]
    parts.append(("files", files_digest.encode()))
    return "r-" + content_digest(parts)[:12]


class ReleaseHistory:
    """Load, change and save the history file. Records are plain dicts (JSON)."""

    def __init__(self, path, keep=5, keep_failed=5):
        if keep < 1:
            raise HistoryError("keep_releases must be at least 1")
        if keep_failed < 0:
            raise HistoryError("keep_failed must not be negative")
        self.path = path
        self.keep = keep
        self.keep_failed = keep_failed
        self.current = None
        self.releases = []

    @classmethod
    def load(cls, path, keep=5, keep_failed=5):
        history = cls(path, keep, keep_failed)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return history
        except (OSError, ValueError) as exc:
            raise HistoryError(
                f"cannot read the release history {path}: {exc}; fix or move the file (it is plain JSON)"
            ) from None
        if (
            not isinstance(data, dict)
            or data.get("format") not in READABLE_FORMATS
            or not isinstance(data.get("releases"), list)
        ):
            raise HistoryError(
                f"{path} is not a release history of format {HISTORY_FORMAT}; move it away to start afresh"
            )
        history.current = data.get("current")
        for record in data["releases"]:
            if isinstance(record, dict) and isinstance(record.get("release"), str):
                record.setdefault("attempt", 1)
                record.setdefault("key", attempt_key(record["release"], record["attempt"]))
                history.releases.append(record)
        return history

    def to_json(self):
        return json.dumps(
            {"format": HISTORY_FORMAT, "current": self.current, "releases": self.releases}, indent=2, sort_keys=True
        )

    def save(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        write_atomic(self.path, (self.to_json() + "\n").encode(), 0o600)

    # ------------------------------------------------------------------ lookups
    def get(self, key):
        for record in self.releases:
            if record["key"] == key:
                return record
        return None

    def current_record(self):
        return self.get(self.current) if self.current else None

    def pending(self):
        """Attempts a run started and never finished (it was killed): the journal's open entries."""
        return [r for r in self.releases if r.get("result") == IN_PROGRESS]

    def previous_record(self):
        """The newest successfully deployed attempt listed before the current one."""
        current = self.current_record()
        if current is None:
            return None
        before = self.releases[: self.releases.index(current)]
        for record in reversed(before):
            if record.get("result") == GOOD:
                return record
        return None

    def resolve(self, target):
        """``'previous'``, a release id (its newest good attempt) or one attempt (``v1+2``; ``v1+1`` is the first)."""
        if target == "previous":
            record = self.previous_record()
            if record is None:
                raise HistoryError(
                    "there is no previous release to roll back to (the history holds no successful deploy "
                    "before the current one)"
                )
            return record
        if not isinstance(target, str) or not KEY_RE.match(target):
            validate_release_id(target)
        if "+" in target:
            # One attempt exactly; <release>+1 names the first, whose key is the bare release id.
            release, attempt = target.rsplit("+", 1)
            record = self.get(attempt_key(release, int(attempt)))
        else:
            record = self._newest_good(target)
        if record is None or record.get("result") != GOOD:
            known = ", ".join(r["key"] for r in reversed(self.releases) if r.get("result") == GOOD) or "none"
            raise HistoryError(
                f"release {target!r} is not in the history as a successful deploy "
                f"(kept releases, newest first: {known})"
            )
        return record

    def _newest_good(self, release):
        for record in reversed(self.releases):
            if record["release"] == release and record.get("result") == GOOD:
                return record
        return None

    # ------------------------------------------------------------------ changes
    def begin(self, record, taken=lambda key: False):
        """Append ``record`` as a new in-progress attempt of its release; returns its key.

        The attempt number is one more than any attempt of the release in the history, and
        skips keys ``taken`` says are in use (a snapshot directory left by an older version).
        """
        attempt = 1 + max([r["attempt"] for r in self.releases if r["release"] == record["release"]] or [0])
        while taken(attempt_key(record["release"], attempt)):
            attempt += 1
        record.update(attempt=attempt, key=attempt_key(record["release"], attempt), result=IN_PROGRESS)
        self.releases.append(record)
        return record["key"]

    def finish(self, key, result, make_current=False):
        record = self.get(key)
        record["result"] = result
        if make_current:
            self.current = key
        return record

    def forget(self, key):
        """Remove an attempt that changed nothing (a refused deploy)."""
        self.releases = [r for r in self.releases if r["key"] != key]

    def prune(self):
        """Drop the oldest deployed records past ``keep`` and failed ones past ``keep_failed``.

        The current record and open attempts are never dropped. Returns the dropped keys.
        """
        good = [r for r in self.releases if r.get("result") == GOOD and r["key"] != self.current]
        bad = [r for r in self.releases if r.get("result") in FAILED_RESULTS]
        room = self.keep - (1 if self.current_record() else 0)
        victims = good[: max(0, len(good) - room)] + bad[: max(0, len(bad) - self.keep_failed)]
        keys = [r["key"] for r in victims]
        self.releases = [r for r in self.releases if r["key"] not in keys]
        return keys

    def keys(self):
        return {r["key"] for r in self.releases}

    def retained_images(self):
        """Every image a kept good release (or the attempt under way) needs: pruning keeps these."""
        keep = set()
        for record in self.releases:
            if record.get("result") not in (GOOD, IN_PROGRESS) and record["key"] != self.current:
                continue
            for service in record.get("services", {}).values():
                for key in ("pinned", "image_id", "image"):
                    if service.get(key):
                        keep.add(service[key])
        return keep
