# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release history of one Compose project: what ran, with which images, files and secrets.

This is a private module_utils (leading underscore): no stable API.

The history lives in ``<project_dir>/.ec2ops/history.json``, a readable JSON document::

    {"format": 1, "current": "v42", "releases": [{...oldest...}, ..., {...newest...}]}

Each release record holds the release id, when and by whom it was deployed, its result,
per service the image reference asked for and the pinned reference that ran
(``repo@sha256:...`` or an image id), the sha256 of every compose and env file (the files
themselves are kept under ``.ec2ops/releases/<id>/``), and the secret versions it ran with.
"""

import hashlib
import json
import os
import re

from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import write_atomic

HISTORY_FORMAT = 1
RELEASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


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

    def __init__(self, path, keep=5):
        if keep < 1:
            raise HistoryError("keep_releases must be at least 1")
        self.path = path
        self.keep = keep
        self.current = None
        self.releases = []

    @classmethod
    def load(cls, path, keep=5):
        history = cls(path, keep)
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
            or data.get("format") != HISTORY_FORMAT
            or not isinstance(data.get("releases"), list)
        ):
            raise HistoryError(
                f"{path} is not a release history of format {HISTORY_FORMAT}; move it away to start afresh"
            )
        history.current = data.get("current")
        history.releases = [r for r in data["releases"] if isinstance(r, dict) and "release" in r]
        return history

    def to_json(self):
        return json.dumps(
            {"format": HISTORY_FORMAT, "current": self.current, "releases": self.releases}, indent=2, sort_keys=True
        )

    def save(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        write_atomic(self.path, (self.to_json() + "\n").encode(), 0o600)

    def get(self, release):
        for record in reversed(self.releases):
            if record["release"] == release:
                return record
        return None

    def current_record(self):
        return self.get(self.current) if self.current else None

    def previous_record(self):
        """The newest successfully deployed release before the current one."""
        seen_current = False
        for record in reversed(self.releases):
            if record["release"] == self.current and not seen_current:
                seen_current = True
                continue
            if seen_current and record.get("result") in ("deployed", "rolled_back_to"):
                return record
        return None

    def resolve(self, release):
        """``'previous'`` or a release id -> its record; a clear error when there is none."""
        if release == "previous":
            record = self.previous_record()
            if record is None:
                raise HistoryError(
                    "there is no previous release to roll back to (the history holds only the current one)"
                )
            return record
        record = self.get(release)
        if record is None:
            known = ", ".join(r["release"] for r in reversed(self.releases)) or "none"
            raise HistoryError(f"release {release!r} is not in the history (kept releases, newest first: {known})")
        if not record.get("snapshot"):
            raise HistoryError(f"release {release!r} has no stored files to restore (it was recorded, not deployed)")
        return record

    def add(self, record, make_current=True):
        """Append (or replace) a record; keep the newest ``keep`` deployable releases. Returns dropped ids."""
        self.releases = [r for r in self.releases if r["release"] != record["release"]]
        self.releases.append(record)
        if make_current:
            self.current = record["release"]
        dropped = []
        while len(self.releases) > self.keep:
            # Never drop the current release.
            victim = next(r for r in self.releases if r["release"] != self.current)
            self.releases.remove(victim)
            dropped.append(victim["release"])
        return dropped

    def retained_images(self):
        """Every pinned image reference and image id a kept release needs (pruning keeps these)."""
        keep = set()
        for record in self.releases:
            for service in record.get("services", {}).values():
                for key in ("pinned", "image_id", "image"):
                    if service.get(key):
                        keep.add(service[key])
        return keep
