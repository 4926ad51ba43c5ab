# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key files from secrets: a variable the secrets give (an RS256 key, a certificate) written to a file.

This is a private module_utils (leading underscore): no stable API.

``normalize_files`` checks secrets_dotenv's ``files`` option; ``plan_files`` takes each file's value
out of the variables (unless ``keep_in_env``) and says which files would change. The caller writes
them with ``write_atomic``. No value ever appears in an error, a change list or a diff.
"""

import os

from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import (
    attribute_differences,
    parse_mode,
    read_current,
    refuse_link,
)


class SecretFilesError(ValueError):
    """A ``files`` entry that cannot be used; the message names the entry and the fix."""


def normalize_files(entries, dest):
    """``files`` entries with defaults filled in; ``path`` is absolute (relative ones are next to ``dest``)."""
    if not isinstance(entries, list):
        raise SecretFilesError("files is a list of {variable, path, mode} entries")
    checked, paths = [], set()
    for index, entry in enumerate(entries):
        where = f"files[{index}]"
        if not isinstance(entry, dict) or not entry.get("variable") or not entry.get("path"):
            raise SecretFilesError(f"{where} needs variable (a variable the secrets give) and path (the file to write)")
        unknown = set(entry) - {"variable", "path", "mode", "keep_in_env"}
        if unknown:
            raise SecretFilesError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
        path = str(entry["path"])
        if not os.path.isabs(path):
            if ".." in path.split("/"):
                raise SecretFilesError(f"{where}.path {path!r}: a relative path stays beside dest (no '..')")
            path = os.path.join(os.path.dirname(os.path.abspath(dest)), path)
        if path in paths or path == os.path.abspath(dest):
            raise SecretFilesError(f"{where}.path {path}: each file once, and not dest itself")
        paths.add(path)
        try:
            mode = parse_mode(entry.get("mode", "0400"))
        except ValueError as exc:
            raise SecretFilesError(f"{where}.mode: {exc}") from None
        checked.append(
            {"variable": str(entry["variable"]), "path": path, "mode": mode, "keep": bool(entry.get("keep_in_env"))}
        )
    return checked


def plan_files(files, variables, uid=None, gid=None):
    """``[(entry, data bytes, changed, current stat)]``; takes the files' variables out of ``variables``."""
    missing = sorted({f["variable"] for f in files} - set(variables))
    if missing:
        raise SecretFilesError(
            f"files: no secret gives {', '.join(missing)} (the variables are the secrets' JSON keys, or their "
            "names; check the secret and its keys/prefix options)"
        )
    plans = []
    for entry in files:
        value = variables[entry["variable"]]
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if data and not data.endswith(b"\n"):
            data += b"\n"  # PEM tools want the final new line a JSON string usually drops
        refuse_link(entry["path"], f"files path {entry['path']}")
        if not os.path.isdir(os.path.dirname(entry["path"])):
            raise SecretFilesError(f"the directory of {entry['path']} does not exist")
        current, current_stat = read_current(entry["path"])
        changed = current != data or bool(current_stat and attribute_differences(current_stat, entry["mode"], uid, gid))
        plans.append((entry, data, changed, current_stat))
    for entry in files:
        if not entry["keep"]:
            variables.pop(entry["variable"], None)
    return plans
