# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a host layer (host, docker, nginx, kafka) is still as its last converge left it.

This is a private module_utils (leading underscore): no stable API.

After a layer converges, deploy.yml records on the host (``/var/lib/ec2ops/layers/<layer>.json``,
0600) the layer's *fingerprint* (the controller's digest of the role's files, the collection
version and the variables set for it, see the ``layer_fingerprint`` lookup) and a *manifest* of
what it manages: a digest of each path it writes (files, or whole directories) and the services
it keeps running. A release run checks every layer in one call: a layer whose fingerprint is
unchanged, whose paths digest the same and whose services are active has nothing to do, and is
skipped. Any difference (a changed variable, a new collection version, a deleted or edited
file, a stopped service) sends that layer through its full converge, which puts it back.
"""

import fnmatch
import hashlib
import json
import os

from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import write_atomic

STATE_FORMAT = 1
# Files larger than this are identified by size and modification time, not read (binaries).
_HASH_LIMIT = 1024 * 1024


class LayerStateError(Exception):
    """A layer name or a state file that cannot be used; the message says why."""


def path_digest(path, exclude=()):
    """A digest of what is at ``path``: a file's content, a directory's files (recursively), or absence."""
    if not os.path.lexists(path):
        return "missing"
    if os.path.islink(path):
        return "link:" + os.readlink(path)
    if os.path.isfile(path):
        return _file_digest(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            if any(fnmatch.fnmatch(relative, pattern) for pattern in exclude):
                continue
            entry = "link:" + os.readlink(full) if os.path.islink(full) else _file_digest(full)
            digest.update(f"{relative}\0{entry}\n".encode())
    return "dir:" + digest.hexdigest()


def directory_digest(path):
    """What is at ``path`` as a directory the layer owns: its owner and mode, not what it holds."""
    if not os.path.lexists(path):
        return "missing"
    if os.path.islink(path) or not os.path.isdir(path):
        return "not a directory"
    stat = os.stat(path)
    return f"dir:{stat.st_mode & 0o7777:o}:{stat.st_uid}:{stat.st_gid}"


def _file_digest(path):
    stat = os.stat(path)
    mode = f"{stat.st_mode & 0o7777:o}:{stat.st_uid}:{stat.st_gid}"
    if stat.st_size > _HASH_LIMIT:
        return f"big:{stat.st_size}:{stat.st_mtime_ns}:{mode}"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(65536), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}:{mode}"


def manifest(paths, exclude=()):
    """``{path: digest}`` for every managed path."""
    return {path: path_digest(path, exclude) for path in sorted(set(paths))}


def state_path(directory, layer):
    if not layer or not layer.replace("_", "").isalnum():
        raise LayerStateError(f"layer {layer!r} is not a valid layer name (letters, digits and '_')")
    return os.path.join(directory, f"{layer}.json")


def read_state(directory, layer):
    """The recorded state of a layer, or None when there is none (or it is unreadable: converge)."""
    try:
        with open(state_path(directory, layer), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == STATE_FORMAT else None


def record(directory, layer, fingerprint, paths, services, exclude=(), write=True, directories=()):
    """Write a layer's state after it converged (``write`` false: only tell); True when the file changes.

    ``paths`` are digested with what they hold; ``directories`` only as directories (owner and mode),
    for a directory whose content is somebody else's (an app's project directory, rewritten by each release).
    """
    data = {
        "format": STATE_FORMAT,
        "fingerprint": fingerprint,
        "exclude": sorted(exclude),
        "paths": manifest(paths, exclude),
        "directories": {path: directory_digest(path) for path in sorted(set(directories))},
        "services": sorted(set(services)),
    }
    text = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    path = state_path(directory, layer)
    try:
        with open(path, "rb") as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    if not write:
        return True
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_atomic(path, text, 0o600)
    return True


def stale_reason(state, fingerprint, service_active):
    """Why a layer must converge (a short sentence), or None when it is as it was left."""
    if state is None:
        return "never recorded on this host"
    if state.get("fingerprint") != fingerprint:
        return "its role, its variables or the collection changed"
    exclude = state.get("exclude") or ()
    for path, recorded in sorted((state.get("paths") or {}).items()):
        if path_digest(path, exclude) != recorded:
            return f"{path} changed on the host"
    for path, recorded in sorted((state.get("directories") or {}).items()):
        if directory_digest(path) != recorded:
            return f"{path} changed on the host"
    for service in state.get("services") or []:
        if not service_active(service):
            return f"service {service} is not running"
    return None


def check(directory, fingerprints, service_active):
    """``(converged, stale)`` for ``{layer: fingerprint}``: names, and ``{layer: reason}``."""
    converged, stale = [], {}
    for layer, fingerprint in sorted(fingerprints.items()):
        reason = stale_reason(read_state(directory, layer), fingerprint, service_active)
        if reason:
            stale[layer] = reason
        else:
            converged.append(layer)
    return converged, stale
