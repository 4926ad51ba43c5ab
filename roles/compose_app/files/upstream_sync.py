# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point nginx upstreams at the containers compose_deploy recorded, wherever Docker put them now.

A program, not a module: standard library only. The compose_app role copies it to the host as
/usr/local/lib/ec2ops/upstream_sync.py, where a systemd unit runs
``python3 upstream_sync.py watch PROJECT_DIR --project NAME``. Unit-tested in
tests/unit/roles/compose_app/test_upstream_sync.py (loaded from this path).

After a reboot or a ``docker restart``, Docker brings the same containers back, maybe at other
addresses, while nginx keeps the literal IP:port compose_deploy switched it to. compose_deploy
records the containers behind each upstream in ``<project_dir>/.ec2ops/upstreams.json``:

    {"format": 1, "upstreams": {"shop_api": {"service": "api", "port": 8080, "containers": ["<id>"]}}}

A sync inspects those containers and, when the running ones answer at other addresses than the
live upstream lists, switches the upstream to them with ec2ops-nginx-upstream (nginx -t first,
then a graceful reload). When none of them runs, nginx is left alone. The decisive comparison
and the switch run under the project's deploy lock (flock on ``.ec2ops/deploy.lock``, never
written to); while a deploy holds it the deploy sets the upstreams itself, and the sync tries
again a few seconds later, a bounded number of times.

    python3 upstream_sync.py sync PROJECT_DIR [--switch-command PATH] [--docker PATH]
    python3 upstream_sync.py watch PROJECT_DIR --project NAME [--switch-command PATH] [--docker PATH]
"""

import argparse
import contextlib
import fcntl
import json
import os
import re
import select
import subprocess
import sys
import time

STATE_FILE = os.path.join(".ec2ops", "upstreams.json")
LOCK_FILE = os.path.join(".ec2ops", "deploy.lock")
SWITCH_COMMAND = "/usr/local/sbin/ec2ops-nginx-upstream"
# The old backend is gone when its address changed: no point waiting long for nginx's old workers.
DRAIN_TIMEOUT = 5
LOCK_ATTEMPTS = 10
LOCK_RETRY_SECONDS = 3.0
DEBOUNCE_SECONDS = 0.5
# A steady stream of events still gets a sync at least this often.
MAX_BURST_SECONDS = 5.0

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SERVER_LINE = re.compile(r"^\s*server\s+([^;]+?)\s*;\s*$")


class SyncError(Exception):
    """The sync cannot go on: state file unreadable, docker inspect failed, lock file unusable."""


class Plan:
    """What one upstream needs: ``action`` is ``ok``, ``switch`` or ``idle`` (nothing runs)."""

    def __init__(self, name, action, servers, live, note):
        self.name = name
        self.action = action
        self.servers = servers
        self.live = live
        self.note = note


def run_command(argv):
    """``(rc, stdout, stderr)`` of ``argv``; a missing program is rc 127, not an exception."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


# ------------------------------------------------------------------ state
def read_state(project_dir):
    """The recorded upstreams, ``{name: {"service", "port", "containers"}}``; {} before any switch."""
    path = os.path.join(project_dir, STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SyncError(f"cannot read {path}: {exc}") from None
    return _validated(data, path)


def _validated(data, path):
    if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(data.get("upstreams"), dict):
        raise SyncError(f'{path} is not an upstreams state file: expected {{"format": 1, "upstreams": {{...}}}}')
    for name, entry in data["upstreams"].items():
        entry = entry if isinstance(entry, dict) else {}
        port = entry.get("port")
        containers = entry.get("containers")
        if not (
            _NAME.match(name)
            and isinstance(port, int)
            and not isinstance(port, bool)
            and 0 < port < 65536
            and isinstance(containers, list)
            and all(isinstance(cid, str) and _NAME.match(cid) for cid in containers)
        ):
            raise SyncError(f"{path}: upstream {name!r} needs a port (1-65535) and a list of container ids")
    return data["upstreams"]


# ------------------------------------------------------------------ docker and nginx
def inspect_containers(run, docker, ids):
    """Details of the containers among ``ids`` that still exist (docker inspect skips the others)."""
    if not ids:
        return []
    rc, out, err = run([docker, "inspect", "--type", "container", *ids])
    if rc != 0 and not _only_missing(err):
        raise SyncError(f"docker inspect failed (rc {rc}): {(err or out).strip()}")
    try:
        details = json.loads(out or "[]")
    except ValueError:
        raise SyncError(f"docker inspect printed no JSON: {out[:200]!r}") from None
    return [item for item in details if isinstance(item, dict)] if isinstance(details, list) else []


def _only_missing(err):
    lines = [line.lower() for line in err.splitlines() if line.strip()]
    return bool(lines) and all("no such object" in line or "no such container" in line for line in lines)


def container_ip(container):
    """The address of the first network (by name) that gave the container one, as compose_deploy picks it."""
    networks = ((container or {}).get("NetworkSettings") or {}).get("Networks") or {}
    for _name, net in sorted(networks.items()):
        if (net or {}).get("IPAddress"):
            return net["IPAddress"]
    return None


def wanted_servers(entry, details):
    """``(servers, gone, stopped)``: ``IP:port`` of each recorded container that runs, in recorded order."""
    by_id = {item.get("Id"): item for item in details}
    servers, gone, stopped = [], 0, 0
    for cid in entry["containers"]:
        container = by_id.get(cid)
        state = (container or {}).get("State") or {}
        ip = container_ip(container)
        if container is None:
            gone += 1
        elif not state.get("Running") or state.get("Restarting") or not ip:
            stopped += 1
        else:
            servers.append(f"{ip}:{entry['port']}")
    return servers, gone, stopped


def live_servers(show_output):
    """The servers of an upstream file, as ``ec2ops-nginx-upstream --show NAME`` prints it."""
    return [m.group(1) for m in map(_SERVER_LINE.match, show_output.splitlines()) if m]


def plan_upstream(name, entry, run, docker, switch):
    details = inspect_containers(run, docker, entry["containers"])
    servers, gone, stopped = wanted_servers(entry, details)
    rc, out, _err = run([switch, "--show", name])
    live = live_servers(out) if rc == 0 else []
    skipped = ", ".join(
        text for count, text in ((gone, f"{gone} no longer exist"), (stopped, f"{stopped} not running")) if count
    )
    note = f" ({skipped})" if skipped else ""
    if not servers:
        total = len(entry["containers"])
        return Plan(name, "idle", servers, live, f"none of its {total} recorded containers runs{note}")
    if sorted(servers) == sorted(live):
        return Plan(name, "ok", servers, live, note)
    return Plan(name, "switch", servers, live, note)


def switch_upstream(run, switch, plan):
    """``(ok, line)`` after pointing the upstream at ``plan.servers``."""
    argv = [switch, "--drain-timeout", str(DRAIN_TIMEOUT), plan.name, *plan.servers]
    rc, out, err = run(argv)
    old = " ".join(plan.live) or "(no upstream file)"
    new = " ".join(plan.servers)
    # 3: the new servers are live; some workers of the old configuration were still finishing.
    if rc in (0, 3):
        return True, f"{plan.name}: switched {old} -> {new}{plan.note}"
    detail = " ".join((err or out).split())
    return False, f"{plan.name}: FAILED to switch {old} -> {new} (rc {rc}): {detail}; nginx keeps {old}"


def describe(plan):
    live = " ".join(plan.live) or "(no upstream file)"
    if plan.action == "idle":
        return f"{plan.name}: {plan.note}; nginx left alone at {live}"
    return f"{plan.name}: already at {live}{plan.note}"


# ------------------------------------------------------------------ lock and passes
@contextlib.contextmanager
def try_deploy_lock(project_dir):
    """Yield True with the project's deploy lock held, False when someone (a deploy) holds it.

    Opened without truncating and never written: what a deploy wrote there stays readable.
    """
    path = os.path.join(project_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SyncError(f"cannot open the deploy lock {path}: {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)  # closing releases the flock


def plan_all(project_dir, run, docker, switch):
    upstreams = read_state(project_dir)
    return [plan_upstream(name, upstreams[name], run, docker, switch) for name in sorted(upstreams)]


def apply_plans(plans, run, switch, say):
    ok = True
    for plan in plans:
        if plan.action == "switch":
            switched, line = switch_upstream(run, switch, plan)
            ok = ok and switched
            say(line)
        else:
            say(describe(plan))
    return ok


def sync(project_dir, run, docker="docker", switch=SWITCH_COMMAND, say=print, sleep=time.sleep, attempts=LOCK_ATTEMPTS):
    """One pass over every recorded upstream; False when something failed.

    A first look without the lock (docker inspect, --show) leaves a deploy that starts meanwhile
    undisturbed; only an upstream that needs a switch takes the lock, and is looked at again under it.
    """
    try:
        plans = plan_all(project_dir, run, docker, switch)
        if not plans:
            say(f"{os.path.join(project_dir, STATE_FILE)}: no upstream recorded yet; nothing to do")
            return True
        if not any(plan.action == "switch" for plan in plans):
            return apply_plans(plans, run, switch, say)
        for attempt in range(attempts):
            with try_deploy_lock(project_dir) as held:
                if held:
                    return apply_plans(plan_all(project_dir, run, docker, switch), run, switch, say)
            if attempt + 1 < attempts:
                say(f"a deploy of {project_dir} holds its lock; trying again in {LOCK_RETRY_SECONDS:.0f}s")
                sleep(LOCK_RETRY_SECONDS)
    except SyncError as exc:
        say(f"error: {exc}")
        return False
    say(f"a deploy of {project_dir} held its lock throughout; it points the upstreams at its containers itself")
    return True


# ------------------------------------------------------------------ watch
def events_argv(docker, project, since):
    return [
        docker,
        "events",
        "--since",
        str(since),
        "--filter",
        "type=container",
        "--filter",
        "event=start",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--format",
        "{{.ID}}",
    ]


def start_events(argv):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, bufsize=0)


def next_burst(fd, debounce=DEBOUNCE_SECONDS, max_burst=MAX_BURST_SECONDS, clock=time.monotonic):
    """Block until events arrive, then read on until ``debounce`` s pass quietly: ``(got_events, ended)``."""
    got, first = False, None
    while True:
        ready, _writable, _failed = select.select([fd], [], [], debounce if got else None)
        if not ready:
            return got, False
        if not os.read(fd, 65536):
            return got, True
        got = True
        first = clock() if first is None else first
        if clock() - first >= max_burst:
            return got, False


def watch(project_dir, project, run, docker="docker", switch=SWITCH_COMMAND, say=print, events=start_events, **kw):
    """Sync now and after every burst of container starts; returns 1 when ``docker events`` ends.

    The subscription starts first (``--since`` a second before, so a start between the call and
    the subscription is replayed): a container Docker restarted before it is caught by the first sync.
    """
    try:
        proc = events(events_argv(docker, project, int(time.time()) - 1))
    except OSError as exc:
        say(f"cannot run docker events: {exc}")
        return 1
    say(f"watching container starts of Compose project {project}; state in {os.path.join(project_dir, STATE_FILE)}")
    sync(project_dir, run, docker, switch, say)
    ended = False
    while not ended:
        got, ended = next_burst(proc.stdout.fileno(), **kw)
        if got:
            sync(project_dir, run, docker, switch, say)
    rc = proc.wait()
    say(f"docker events ended (rc {rc}); exiting so that systemd starts the watch again")
    return 1


def _parser():
    parser = argparse.ArgumentParser(
        prog="upstream_sync.py", description="Point nginx upstreams at the containers compose_deploy recorded."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("sync", "one pass, then exit"), ("watch", "sync now and after every container start")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("project_dir")
        sub.add_argument("--switch-command", default=SWITCH_COMMAND)
        sub.add_argument("--docker", default="docker")
        if name == "watch":
            sub.add_argument("--project", required=True, help="the Compose project name")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)

    def say(line):
        print(line, flush=True)

    if args.command == "sync":
        ok = sync(args.project_dir, run_command, args.docker, args.switch_command, say)
        sys.exit(0 if ok else 1)
    sys.exit(watch(args.project_dir, args.project, run_command, args.docker, args.switch_command, say))


if __name__ == "__main__":
    main()
