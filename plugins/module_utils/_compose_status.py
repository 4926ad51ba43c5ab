# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an operator asks about a project compose_deploy manages, read without changing anything.

This is a private module_utils (leading underscore): no stable API.

``project_status`` reads the release history, the audit log, the operator's hold, whether a deploy
holds the lock right now (a shared, non-blocking probe of the same ``flock``), and the project's
containers (image, state, health, how long they have run, whether they run what the current
release says); with ``logs`` also the last lines of one service's containers. Every value of the
current release's env files is masked in all of it.
"""

import datetime
import errno
import fcntl
import json
import os

from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import STATE_DIR, read_hold
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import DotenvError
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import parse as parse_dotenv
from ansible_collections.ec2ops.stack.plugins.module_utils._health import mask_tree, maskable_values
from ansible_collections.ec2ops.stack.plugins.module_utils._release_history import ReleaseHistory

# What a release summary keeps of a history record (never the env files' values: they are not in it).
_RECORD_FIELDS = (
    "key",
    "release",
    "attempt",
    "result",
    "started_at",
    "ended_at",
    "deployed_by",
    "secret_versions",
    "release_commands",
    "failure",
    "requested_images",
    "last_restored_at",
)


def project_status(docker, project_dir, project, audit_lines=20, logs=None, now=None):
    """The project's state as a dict; ``logs`` is ``{"service", "lines", "since"}`` or None."""
    state_dir = os.path.join(project_dir, STATE_DIR)
    history = ReleaseHistory.load(os.path.join(state_dir, "history.json"))
    current = history.current_record()
    secrets = _env_secrets(state_dir, current)
    names = {project, *((current or {}).get("services") or {})}
    status = {
        "project": project,
        "current": (current or {}).get("key"),
        "releases": [{k: r[k] for k in _RECORD_FIELDS if k in r} for r in reversed(history.releases)],
        "hold": read_hold(state_dir),
        "deploy_running": deploy_running(os.path.join(state_dir, "deploy.lock")),
        "audit": read_audit(os.path.join(state_dir, "audit.log"), audit_lines),
        "services": services_status(docker, project, current, now),
    }
    if logs:
        status["logs"] = service_logs(docker, project, logs)
    return mask_tree(status, secrets - names)


def _env_secrets(state_dir, record):
    """The maskable values of a release's snapshotted env files."""
    found = set()
    for name in (record or {}).get("env_files") or []:
        path = os.path.join(state_dir, "releases", record["key"], "files", name)
        try:
            with open(path, encoding="utf-8") as handle:
                found |= maskable_values(parse_dotenv(handle.read(), strict=False).values())
        except (OSError, UnicodeDecodeError, DotenvError):
            continue
    return found


def deploy_running(lock_path):
    """Who holds the deploy lock now (what the holder wrote), or None when nobody does.

    A shared lock that is given back at once: a deploy starting in that instant waits a moment
    (an anonymous holder gets a grace period), it is never refused because of it.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            data = os.pread(fd, 65536, 0)
            try:
                holder = json.loads(data.decode() or "{}")
            except ValueError:
                holder = {}
            return holder if isinstance(holder, dict) and holder else {"user": "ec2ops-upstream-sync"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_audit(path, lines):
    """The last ``lines`` entries of the audit log, oldest first (a line that is not JSON is kept as text)."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            tail = handle.read().decode("utf-8", "replace").splitlines()[-lines:]
    except FileNotFoundError:
        return []
    entries = []
    for line in tail:
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"text": line})
    return entries


def services_status(docker, project, current, now=None):
    """Per service, its containers (image, state, health, seconds running) and whether it runs the release."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    expected = (current or {}).get("services") or {}
    containers = [
        c
        for c in docker.project_containers(project)
        if (c.get("Config") or {}).get("Labels", {}).get("com.docker.compose.oneoff") != "True"
    ]
    services = {}
    for container in containers:
        labels = (container.get("Config") or {}).get("Labels") or {}
        state = container.get("State") or {}
        entry = {
            "name": (container.get("Name") or "").lstrip("/"),
            "image": (container.get("Config") or {}).get("Image"),
            "state": state.get("Status"),
            "health": (state.get("Health") or {}).get("Status", "none"),
            "running_seconds": _seconds_since(state.get("StartedAt"), now) if state.get("Status") == "running" else 0,
            "restarts": container.get("RestartCount", 0),
        }
        services.setdefault(labels.get("com.docker.compose.service", "?"), {"containers": []})["containers"].append(
            entry
        )
    for name, svc in expected.items():
        found = services.setdefault(name, {"containers": []})
        running = [c for c in containers if _service(c) == name and (c.get("State") or {}).get("Status") == "running"]
        image_ok = all(c.get("Image") == svc.get("image_id") for c in running) if svc.get("image_id") else True
        count_ok = len(running) == svc.get("replicas") if svc.get("replicas") else bool(running)
        found["release_image"] = svc.get("pinned")
        found["as_released"] = bool(running) and image_ok and count_ok
    return services


def service_logs(docker, project, logs):
    """The last lines of each container of one service: ``{container name: text}``."""
    found = {}
    for container in docker.project_containers(project, logs["service"]):
        name = (container.get("Name") or "").lstrip("/")
        found[name] = docker.logs(container["Id"], logs.get("lines") or 100, since=logs.get("since"))
    return found


def _service(container):
    return ((container.get("Config") or {}).get("Labels") or {}).get("com.docker.compose.service")


def _seconds_since(stamp, now):
    """Whole seconds since Docker's ``StartedAt`` (UTC, nanoseconds and ``Z``), or None."""
    try:
        started = datetime.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None
    return max(0, int((now - started).total_seconds()))


# ---------------------------------------------------------------- reports
def report(status, what):
    """Lines an operator reads (a terminal, AWX's output) for ``what``: status, history, audit or logs."""
    return {"status": _status_lines, "history": _history_lines, "audit": _audit_lines, "logs": _log_lines}[what](status)


def _status_lines(status):
    releases = status.get("releases") or []
    current = next((r for r in releases if r.get("key") == status.get("current")), None)
    lines = []
    if current:
        lines.append(
            f"{status['project']}: release {current['key']}, deployed by {current.get('deployed_by', '?')} "
            f"at {current.get('ended_at') or current.get('started_at', '?')}"
        )
    else:
        lines.append(f"{status['project']}: no release deployed yet")
    last = releases[0] if releases else None
    if last and last is not current:
        lines.append(f"last attempt: {last['key']} {last.get('result')} at {last.get('ended_at') or '?'}")
    hold = status.get("hold")
    lines.append(
        f"deploys held by {hold.get('user', '?')} since {hold.get('since', '?')}: {hold.get('message') or '-'}"
        if hold
        else "deploys: not held"
    )
    running = status.get("deploy_running")
    if running:
        lines.append(
            f"a {running.get('action', 'deploy')} is running now: user {running.get('user', '?')}, "
            f"release {running.get('release') or '-'}, since {running.get('started', '?')}"
        )
    for name, svc in sorted((status.get("services") or {}).items()):
        containers = svc.get("containers") or []
        up = [c for c in containers if c.get("state") == "running"]
        health = ", ".join(sorted({c.get("health", "none") for c in up})) or "-"
        mark = {True: "as released", False: "NOT as released", None: "not in the release"}[svc.get("as_released")]
        oldest = max((c.get("running_seconds") or 0 for c in up), default=0)
        restarts = sum(c.get("restarts") or 0 for c in containers)
        lines.append(
            f"  {name}: {mark}; {len(up)}/{len(containers)} running, health {health}, up {_duration(oldest)}"
            + (f", {restarts} restarts" if restarts else "")
        )
    return lines


def _history_lines(status):
    lines = []
    for record in status.get("releases") or []:
        mark = "*" if record.get("key") == status.get("current") else " "
        secrets = ", ".join(
            f"{s.get('name', '?')}@{str(s.get('version_id', '?'))[:8]}" for s in record.get("secret_versions") or []
        )
        steps = "; ".join(
            f"{s['service']}: {s['command']} -> {s['exit_code']}" for s in record.get("release_commands") or []
        )
        line = (
            f"{mark} {record['key']:<24} {record.get('result', '?'):<12} {record.get('started_at', '?')} "
            f"by {record.get('deployed_by', '?')}"
        )
        if secrets:
            line += f"; secrets {secrets}"
        if steps:
            line += f"; ran a schema step ({steps})"
        if record.get("failure"):
            line += f"; failure: {record['failure']}"
        lines.append(line)
    return lines or ["no releases yet"]


def _audit_lines(status):
    lines = []
    for entry in status.get("audit") or []:
        if "text" in entry:
            lines.append(entry["text"])
            continue
        line = (
            f"{entry.get('at', '?')} {entry.get('action', '?')} {entry.get('release') or '-'} "
            f"{entry.get('result', '?')} by {entry.get('user', '?')} ({entry.get('seconds', 0)}s)"
        )
        if entry.get("failure"):
            line += f": {entry['failure']}"
        if entry.get("message"):
            line += f": {entry['message']}"
        lines.append(line)
    return lines or ["the audit log is empty"]


def _log_lines(status):
    lines = []
    for container, text in sorted((status.get("logs") or {}).items()):
        lines.append(f"== {container}")
        lines.extend(text.splitlines())
    return lines or ["no containers of that service"]


def _duration(seconds):
    minutes = int(seconds) // 60
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"
