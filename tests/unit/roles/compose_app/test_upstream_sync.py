import fcntl
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

# A program the compose_app role copies to hosts (roles/compose_app/files), loaded from its path.
_PATH = pathlib.Path(__file__).resolve().parents[4] / "roles" / "compose_app" / "files" / "upstream_sync.py"
_SPEC = importlib.util.spec_from_file_location("ec2ops_upstream_sync", _PATH)
us = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(us)

SWITCH = "/usr/local/sbin/ec2ops-nginx-upstream"
ID_A, ID_B, ID_C = ("a" * 64, "b" * 64, "c" * 64)


def container(cid, ip, running=True, networks=None):
    nets = networks if networks is not None else {"shop_default": {"IPAddress": ip}}
    return {"Id": cid, "State": {"Running": running, "Restarting": False}, "NetworkSettings": {"Networks": nets}}


def upstream_file(*servers):
    lines = ["# Written by ec2ops-nginx-upstream", "upstream shop_api {"]
    lines += [f"    server {server};" for server in servers]
    return "\n".join([*lines, "    keepalive 16;", "}", ""])


class FakeHost:
    """docker inspect and ec2ops-nginx-upstream as the sync sees them; records every call."""

    def __init__(self, containers, live=None, switch_rc=0):
        self.containers = {c["Id"]: c for c in containers}
        self.live = {"shop_api": list(live or [])}
        self.switch_rc = switch_rc
        self.calls = []

    def run(self, argv):
        self.calls.append(list(argv))
        if argv[:2] == ["docker", "inspect"]:
            return self._inspect(argv[4:])
        if argv[0] == SWITCH and argv[1] == "--show":
            name = argv[2]
            return (0, upstream_file(*self.live[name]), "") if name in self.live else (1, "", "No such file")
        if argv[0] == SWITCH:
            name, servers = argv[3], argv[4:]
            if self.switch_rc in (0, 3):
                self.live[name] = list(servers)
            return self.switch_rc, f"upstream {name}: -> {' '.join(servers)}", "nginx said no" if self.switch_rc else ""
        raise AssertionError(f"unexpected command {argv}")

    def _inspect(self, ids):
        found = [self.containers[i] for i in ids if i in self.containers]
        missing = [i for i in ids if i not in self.containers]
        err = "".join(f"Error: No such object: {i}\n" for i in missing)
        return (1 if missing else 0), json.dumps(found), err

    @property
    def switches(self):
        return [c for c in self.calls if c[0] == SWITCH and c[1] != "--show"]


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".ec2ops").mkdir(mode=0o700)
    return tmp_path


def record(project, containers, port=8080, name="shop_api"):
    state = {"format": 1, "upstreams": {name: {"service": "api", "port": port, "containers": containers}}}
    path = project / ".ec2ops" / "upstreams.json"
    path.write_text(json.dumps(state))
    path.chmod(0o600)


def run_sync(project, host, **kw):
    lines = []
    ok = us.sync(str(project), host.run, say=lines.append, sleep=kw.pop("sleep", lambda s: None), **kw)
    return ok, lines


def test_a_changed_ip_switches_the_upstream_to_the_new_address(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"])
    ok, lines = run_sync(project, host)
    assert ok
    assert host.switches == [[SWITCH, "--drain-timeout", "5", "shop_api", "10.201.0.9:8080"]]
    assert lines == ["shop_api: switched 10.201.0.4:8080 -> 10.201.0.9:8080"]


def test_an_unchanged_ip_changes_nothing(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.4")], live=["10.201.0.4:8080"])
    ok, lines = run_sync(project, host)
    assert ok and host.switches == []
    assert lines == ["shop_api: already at 10.201.0.4:8080"]


def test_a_sync_with_nothing_to_do_does_not_touch_the_lock(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.4")], live=["10.201.0.4:8080"])
    with open(project / ".ec2ops" / "deploy.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        ok, lines = run_sync(project, host)
    assert ok and lines == ["shop_api: already at 10.201.0.4:8080"]


def test_gone_and_stopped_containers_are_skipped(project):
    record(project, [ID_A, ID_B, ID_C])
    host = FakeHost(
        [container(ID_B, "10.201.0.3", running=False), container(ID_C, "10.201.0.7")], live=["10.201.0.2:8080"]
    )
    ok, lines = run_sync(project, host)
    assert ok
    assert host.switches[0][3:] == ["shop_api", "10.201.0.7:8080"]
    assert lines == ["shop_api: switched 10.201.0.2:8080 -> 10.201.0.7:8080 (1 no longer exist, 1 not running)"]


def test_a_restarting_container_or_one_without_address_is_not_a_server(project):
    record(project, [ID_A, ID_B])
    restarting = container(ID_A, "10.201.0.3")
    restarting["State"]["Restarting"] = True
    host = FakeHost([restarting, container(ID_B, "", networks={"none": {"IPAddress": ""}})], live=["10.201.0.3:8080"])
    ok, lines = run_sync(project, host)
    assert ok and host.switches == []
    assert lines == [
        "shop_api: none of its 2 recorded containers runs (2 not running); nginx left alone at 10.201.0.3:8080"
    ]


def test_when_no_recorded_container_runs_nginx_is_left_alone(project):
    record(project, [ID_A, ID_B])
    host = FakeHost([container(ID_A, "10.201.0.3", running=False)], live=["10.201.0.3:8080"])
    ok, lines = run_sync(project, host)
    assert ok and host.switches == []
    assert "nginx left alone at 10.201.0.3:8080" in lines[0]
    assert "none of its 2 recorded containers runs (1 no longer exist, 1 not running)" in lines[0]


def test_replicas_become_one_server_each(project):
    record(project, [ID_A, ID_B, ID_C], port=9000)
    host = FakeHost(
        [container(ID_A, "10.201.0.2"), container(ID_B, "10.201.0.3"), container(ID_C, "10.201.0.4")],
        live=["10.201.0.2:9000"],
    )
    ok, _lines = run_sync(project, host)
    assert ok
    assert host.switches[0][3:] == ["shop_api", "10.201.0.2:9000", "10.201.0.3:9000", "10.201.0.4:9000"]


def test_the_same_replicas_in_another_order_are_not_a_change(project):
    record(project, [ID_A, ID_B])
    host = FakeHost(
        [container(ID_A, "10.201.0.2"), container(ID_B, "10.201.0.3")], live=["10.201.0.3:8080", "10.201.0.2:8080"]
    )
    ok, _lines = run_sync(project, host)
    assert ok and host.switches == []


def test_the_ip_comes_from_the_first_network_by_name_that_has_one(project):
    nets = {"zeta": {"IPAddress": "10.9.0.2"}, "alpha": {"IPAddress": ""}, "beta": {"IPAddress": "10.8.0.2"}}
    assert us.container_ip(container(ID_A, None, networks=nets)) == "10.8.0.2"
    assert us.container_ip({}) is None


def test_a_held_lock_skips_the_switch_and_retries_until_it_is_free(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"])
    holder = open(project / ".ec2ops" / "deploy.lock", "w")  # closed in sleep(): the deploy ends
    holder.write('{"user": "alice", "release": "v2"}')
    holder.flush()
    fcntl.flock(holder, fcntl.LOCK_EX)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            holder.close()  # the deploy ends

    ok, lines = run_sync(project, host, sleep=sleep)
    assert ok
    assert sleeps == [us.LOCK_RETRY_SECONDS] * 2
    assert lines[:2] == [f"a deploy of {project} holds its lock; trying again in 3s"] * 2
    assert lines[2] == "shop_api: switched 10.201.0.4:8080 -> 10.201.0.9:8080"
    assert len(host.switches) == 1
    # The sync never writes to the lock file: what the deploy wrote there stays.
    assert (project / ".ec2ops" / "deploy.lock").read_text() == '{"user": "alice", "release": "v2"}'


def test_a_lock_held_throughout_gives_up_after_a_bounded_number_of_attempts(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"])
    sleeps = []
    with open(project / ".ec2ops" / "deploy.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        ok, lines = run_sync(project, host, sleep=sleeps.append, attempts=4)
    assert ok and host.switches == []
    assert len(sleeps) == 3
    assert lines[-1].endswith("held its lock throughout; it points the upstreams at its containers itself")


def test_the_decision_is_taken_again_under_the_lock(project):
    """A deploy that switched the upstream while the sync waited for the lock is not undone."""
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9"), container(ID_B, "10.201.0.5")], live=["10.201.0.4:8080"])
    with open(project / ".ec2ops" / "deploy.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)

        def deploy_finishes(_seconds):
            record(project, [ID_B])
            host.live["shop_api"] = ["10.201.0.5:8080"]
            fcntl.flock(holder, fcntl.LOCK_UN)

        ok, lines = run_sync(project, host, sleep=deploy_finishes)
    assert ok and host.switches == []
    assert lines[-1] == "shop_api: already at 10.201.0.5:8080"


def test_the_lock_file_is_not_followed_through_a_symlink(project, tmp_path_factory):
    record(project, [ID_A])
    target = tmp_path_factory.mktemp("elsewhere") / "file"
    target.write_text("keep")
    os.symlink(target, project / ".ec2ops" / "deploy.lock")
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"])
    ok, lines = run_sync(project, host)
    assert not ok and host.switches == []
    assert lines[0].startswith(f"error: cannot open the deploy lock {project}/.ec2ops/deploy.lock")
    assert target.read_text() == "keep"


def test_a_failed_switch_fails_the_pass_and_says_what_nginx_keeps(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"], switch_rc=1)
    ok, lines = run_sync(project, host)
    assert not ok
    assert lines == [
        "shop_api: FAILED to switch 10.201.0.4:8080 -> 10.201.0.9:8080 (rc 1): nginx said no;"
        " nginx keeps 10.201.0.4:8080"
    ]


def test_old_workers_still_draining_is_still_a_switch(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"], switch_rc=3)
    ok, lines = run_sync(project, host)
    assert ok and lines[0].startswith("shop_api: switched")


def test_a_missing_upstream_file_is_written(project):
    record(project, [ID_A], name="other")
    host = FakeHost([container(ID_A, "10.201.0.9")])
    ok, lines = run_sync(project, host)
    assert ok and host.switches[0][3:] == ["other", "10.201.0.9:8080"]
    assert lines == ["other: switched (no upstream file) -> 10.201.0.9:8080"]


def test_no_state_file_means_nothing_to_do(project):
    host = FakeHost([])
    ok, lines = run_sync(project, host)
    assert ok and host.calls == []
    assert lines == [f"{project}/.ec2ops/upstreams.json: no upstream recorded yet; nothing to do"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"format": 2, "upstreams": {}}),
        json.dumps({"format": 1, "upstreams": {"shop_api": {"port": "8080", "containers": [ID_A]}}}),
        json.dumps({"format": 1, "upstreams": {"shop_api": {"port": 8080, "containers": ["--rm"]}}}),
        json.dumps({"format": 1, "upstreams": {"shop api": {"port": 8080, "containers": [ID_A]}}}),
        json.dumps({"format": 1, "upstreams": {"shop_api": {"port": True, "containers": [ID_A]}}}),
    ],
)
def test_a_malformed_state_file_is_a_clear_error_naming_it(project, content):
    path = project / ".ec2ops" / "upstreams.json"
    path.write_text(content)
    host = FakeHost([])
    ok, lines = run_sync(project, host)
    assert not ok and host.calls == []
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]


def test_docker_failing_for_another_reason_is_an_error(project):
    record(project, [ID_A])

    def run(argv):
        return 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"

    lines = []
    assert not us.sync(str(project), run, say=lines.append)
    assert lines == [
        "error: docker inspect failed (rc 1): Cannot connect to the Docker daemon at unix:///var/run/docker.sock"
    ]


def test_live_servers_reads_the_server_lines_only():
    text = upstream_file("10.0.0.2:8080", "10.0.0.3:8080 backup") + "# server 1.2.3.4:1;\n"
    assert us.live_servers(text) == ["10.0.0.2:8080", "10.0.0.3:8080 backup"]


def test_run_command_reports_a_missing_program_as_rc_127():
    rc, out, err = us.run_command(["/nonexistent/ec2ops-test-program"])
    assert rc == 127 and out == "" and err


class FakeEvents:
    """``docker events`` stand-in: a real child process printing container ids at set times."""

    def __init__(self, script):
        self.script = script
        self.argv = None

    def __call__(self, argv):
        self.argv = argv
        return subprocess.Popen([sys.executable, "-c", self.script], stdout=subprocess.PIPE, bufsize=0)


def test_watch_subscribes_first_syncs_once_then_once_per_burst_and_exits_when_events_end(project):
    record(project, [ID_A])
    host = FakeHost([container(ID_A, "10.201.0.9")], live=["10.201.0.4:8080"])
    order = []
    events = FakeEvents(
        "import sys, time\n"
        "time.sleep(0.3)\n"
        "for _attempt in range(3): print('a' * 64, flush=True); time.sleep(0.02)\n"
        "time.sleep(1.0)\n"
        "print('a' * 64, flush=True)\n"
    )

    def subscribe(argv):
        order.append("events")
        return events(argv)

    def run(argv):
        order.append("inspect" if argv[1] == "inspect" else "nginx")
        return host.run(argv)

    lines = []
    rc = us.watch(str(project), "shop", run, say=lines.append, events=subscribe, debounce=0.3)
    assert rc == 1
    assert order[0] == "events" and order[1] == "inspect"
    assert events.argv[:2] == ["docker", "events"]
    assert events.argv[4:] == [
        "--filter",
        "type=container",
        "--filter",
        "event=start",
        "--filter",
        "label=com.docker.compose.project=shop",
        "--format",
        "{{.ID}}",
    ]
    # The first sync, one for the burst of three starts, one for the last start.
    assert lines[1:4] == [
        "shop_api: switched 10.201.0.4:8080 -> 10.201.0.9:8080",
        "shop_api: already at 10.201.0.9:8080",
        "shop_api: already at 10.201.0.9:8080",
    ]
    assert len(lines) == 5 and lines[-1] == "docker events ended (rc 0); exiting so that systemd starts the watch again"
    assert len(host.switches) == 1


def test_the_script_runs_standalone_with_python3(project, tmp_path):
    """As the systemd unit runs it: a copy outside the collection, stdlib only, fake docker and switch."""
    record(project, [ID_A])
    script = tmp_path / "upstream_sync.py"
    script.write_text(open(us.__file__, encoding="utf-8").read())
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho '" + json.dumps([container(ID_A, "10.201.0.9")]) + "'\n")
    switch = tmp_path / "switch"
    log = tmp_path / "switch.log"
    switch.write_text(
        f'#!/bin/sh\nif [ "$1" = --show ]; then echo "  server 10.201.0.4:8080;"; else echo "$@" >> {log}; fi\n'
    )
    docker.chmod(0o755)
    switch.chmod(0o755)
    argv = [
        sys.executable,
        "-I",
        str(script),
        "sync",
        str(project),
        "--docker",
        str(docker),
        "--switch-command",
        str(switch),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "shop_api: switched 10.201.0.4:8080 -> 10.201.0.9:8080\n"
    assert log.read_text() == "--drain-timeout 5 shop_api 10.201.0.9:8080\n"


def test_the_script_exits_non_zero_on_a_malformed_state_file(project, tmp_path):
    (project / ".ec2ops" / "upstreams.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-I", us.__file__, "sync", str(project), "--docker", "/bin/false"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "upstreams.json is not an upstreams state file" in proc.stdout
