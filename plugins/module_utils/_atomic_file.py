# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a file so that readers see the old content or the new one, never a mix.

This is a private module_utils (leading underscore): no stable API.

``write_atomic`` creates a temporary file next to the destination, gives it
its final owner, group and mode *before* any content is written (a secret is
never readable with looser permissions, not even for a moment), writes and
fsyncs it, renames it over the destination and fsyncs the directory.  If
anything fails the temporary file is removed and the destination is left
exactly as it was.  The rename replaces whatever the destination's name is,
a symbolic link included, and never writes through it.

Root writes into directories another user may own (an app's project
directory, owned by ``compose_app_owner``); that user could plant a symbolic
link where root is about to write, pointing at any file root may change.
``refuse_link`` and ``private_directory`` refuse such a path with a message
that names it and the fix; ``read_current`` and ``set_attributes`` never
follow a link (``O_NOFOLLOW``).
"""

import contextlib
import grp
import os
import pwd
import re
import stat
import tempfile

_OCTAL_MODE_RE = re.compile(r"0?[0-7]{3,4}\Z|0o[0-7]{3,4}\Z")


class FileAttributeError(ValueError):
    """An owner, group or mode that cannot be used."""


class UnsafePathError(OSError):
    """A path root must not write through: a symbolic link, or a directory another user controls."""


def refuse_link(path, what):
    """Raise UnsafePathError when ``path`` is a symbolic link (``what`` names the option or file)."""
    if os.path.islink(path):
        raise UnsafePathError(
            f"{what} {path} is a symbolic link (to {os.readlink(path)}): refusing to write through it, since whoever "
            "can write its directory could point it at any file root may change. Remove the link, or point the "
            "option at the real file."
        )


def private_directory(path, what):
    """Make ``path`` a directory of this process's user alone (0700): created when missing, its mode tightened.

    A symbolic link, something that is not a directory, or a directory of another user is refused
    (UnsafePathError naming ``what`` and the fix): that user could change what root reads and writes there.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    refuse_link(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UnsafePathError(f"{what} {path} is not a directory ({exc.strerror}): remove it") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise UnsafePathError(
                f"{what} {path} belongs to uid {info.st_uid}, not to uid {os.geteuid()} that runs this: another user "
                f"could change what is kept there. Give it back (chown -R {os.geteuid()} {path}) or remove it."
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def parse_mode(mode):
    """A permission mode as an int: an int as YAML gave it (0600 -> 384), or an octal string ('0600')."""
    if isinstance(mode, bool):
        raise FileAttributeError("mode must be an octal string such as '0600'")
    if isinstance(mode, int):
        if not 0 <= mode <= 0o7777:
            raise FileAttributeError("mode must be between 0000 and 07777")
        return mode
    if isinstance(mode, str) and _OCTAL_MODE_RE.match(mode.strip()):
        return int(mode.strip().replace("0o", ""), 8)
    raise FileAttributeError(f"mode {mode!r} is not an octal mode such as '0600' (symbolic modes are not supported)")


def resolve_uid(owner):
    """User name or numeric id -> uid (None stays None)."""
    if owner is None or owner == "":
        return None
    try:
        return pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        if str(owner).isdigit():
            return int(owner)
        raise FileAttributeError(f"owner {owner!r} does not exist on this host") from None


def resolve_gid(group):
    """Group name or numeric id -> gid (None stays None)."""
    if group is None or group == "":
        return None
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        if str(group).isdigit():
            return int(group)
        raise FileAttributeError(f"group {group!r} does not exist on this host") from None


def read_current(path):
    """``(content bytes, os.stat_result)`` of ``path``, or ``(None, None)`` when it does not exist.

    A symbolic link is not followed (ELOOP, an OSError).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None, None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), os.fstat(handle.fileno())


def target_ownership(current_stat, uid, gid):
    """The ``(uid, gid)`` to give a new version of the file (-1 keeps the process default).

    Explicit values win; otherwise a replaced file keeps its owner and group,
    which only root can hand to another user.
    """
    if current_stat is not None and os.geteuid() == 0:
        uid = current_stat.st_uid if uid is None else uid
        gid = current_stat.st_gid if gid is None else gid
    return (-1 if uid is None else uid), (-1 if gid is None else gid)


def attribute_differences(current_stat, mode, uid, gid):
    """Names of the attributes (mode, owner, group) of an existing file that differ from the wanted ones."""
    differences = []
    if stat.S_IMODE(current_stat.st_mode) != mode:
        differences.append("mode")
    if uid not in (None, -1) and current_stat.st_uid != uid:
        differences.append("owner")
    if gid not in (None, -1) and current_stat.st_gid != gid:
        differences.append("group")
    return differences


def set_attributes(path, mode, uid, gid):
    """Fix owner, group and mode of an existing file in place (its content is already right); never through a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if uid not in (None, -1) or gid not in (None, -1):
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_atomic(path, data, mode, uid=-1, gid=-1):
    """Replace ``path`` with ``data`` (bytes) atomically; see the module docstring."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        try:
            # Owner first: chown clears set-id bits, which the later chmod then sets as asked.
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename durable (best effort: some filesystems refuse to fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
