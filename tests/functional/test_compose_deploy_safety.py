"""compose_deploy keeps its promise on the paths teams hit every week (issue 13), on the real engine.

Each test runs the real module (plugins/modules/compose_deploy.py, executed as Ansible runs it:
one process, arguments from a JSON file) against this machine's Docker engine and Compose v2,
with a private nginx (tests/functional/deploy_rig.py) and the nginx role's real switch
script in front of the rolling ``api`` service. The app is tests/images/demo-app
(ec2ops-test/deploy-app:v1..v4, see conftest.app_images).

The fault-injection cases kill the module with SIGKILL at named phase boundaries through the
TEST-ONLY fault point in _compose_deployer (EC2OPS_TEST_KILL_AT), then check that the app is
still served, that the next runs converge, and that history and release directories agree.
"""

import fcntl
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

import pytest
from deploy_rig import Load, PrivateNginx

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPO = "ec2ops-test/deploy-app"
SECRET = "S3cr3t-pa55-9f1c"

COMPOSE = """
services:
  api:
    image: {repo}:v1
    environment:
      APP_VERSION: ${{APP_VERSION:-unset}}
      DATABASE_URL_FOR_LOGS: ${{DATABASE_URL:-}}
    deploy:
      replicas: {replicas}
  worker:
    image: {repo}:v1
    command: {worker_command}
    environment:
      APP_VERSION: ${{APP_VERSION:-unset}}
      DATABASE_URL_FOR_LOGS: ${{DATABASE_URL:-}}
"""
WORKER_OK = '["python3", "/app/app.py"]'
# A release whose worker prints its connection string and dies, as apps failing to start do.
WORKER_LEAKS = """["sh", "-c", "echo connecting to $$DATABASE_URL_FOR_LOGS; echo giving up; exit 3"]"""


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


class Stack:
    """A Compose project in project_dir, staged from stage_dir, with its own nginx."""

    def __init__(self, tmp_path, replicas=1):
        self.name = f"ec2ops-safe-{uuid.uuid4().hex[:8]}"
        self.dir = tmp_path / self.name
        self.stage = tmp_path / "stage"
        self.dir.mkdir()
        self.stage.mkdir()
        self.replicas = replicas
        self.nginx = PrivateNginx(tmp_path, upstream=f"{self.name.replace('-', '_')}_api").start()
        self.stage_files(env={"APP_VERSION": "env-one", "DATABASE_URL": f"postgres://app:{SECRET}@db/app"})

    def stage_files(self, env, worker_command=WORKER_OK, replicas=None):
        compose = COMPOSE.format(repo=REPO, replicas=replicas or self.replicas, worker_command=worker_command)
        (self.stage / "compose.yml").write_text(compose)
        (self.stage / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        os.chmod(self.stage / ".env", 0o600)

    def args(self, **overrides):
        args = {
            "project_dir": str(self.dir),
            "project_name": self.name,
            "source_dir": str(self.stage),
            "pull": "never",
            "prune_images": False,
            "verify_seconds": 2,
            "wait_timeout": 40,
            "keep_releases": 10,
            "nginx_switch_command": str(self.nginx.switch),
            "services": {
                "api": {
                    "strategy": "rolling",
                    "nginx_upstream": self.nginx.upstream,
                    "port": 8080,
                    "drain_timeout": 5,
                    "stop_timeout": 1,
                    "health": {"url": "http://{ip}:8080/api/v1/health", "interval": 0.3},
                },
                "worker": {"health": {"interval": 0.3}},
            },
        }
        args.update(overrides)
        return args

    def deploy(self, release, version=None, kill_at=None, **overrides):
        overrides.setdefault("images", {s: f"{REPO}:{version or release}" for s in ("api", "worker")})
        return run_module(self.args(release=release, **overrides), kill_at=kill_at)

    def rollback(self, target="previous", **overrides):
        return run_module(self.args(state="rolled_back", release=target, **overrides))

    def history(self):
        return json.loads((self.dir / ".ec2ops" / "history.json").read_text())

    def release_dirs(self):
        releases = self.dir / ".ec2ops" / "releases"
        return set(os.listdir(releases)) if releases.exists() else set()

    def running(self, service):
        """``[(container id, image id)]`` of the service's running containers."""
        ids = docker(
            "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        if not ids:
            return []
        details = json.loads(docker("inspect", *ids).stdout)
        return [(c["Id"], c["Image"]) for c in details if c["State"]["Status"] == "running"]

    def served(self):
        status, body = self.nginx.get()
        return status, (body or {}).get("version")

    def down(self):
        self.nginx.stop()
        docker("compose", "-p", self.name, "down", "-t", "0", "--remove-orphans", check=False)


def run_module(args, kill_at=None, check_mode=False):
    """Run compose_deploy as Ansible runs a module: ``(returncode, result dict or None, raw output)``."""
    args = dict(args, _ansible_check_mode=check_mode)
    path = pathlib.Path(args["project_dir"]).parent / f"args-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {k: v for k, v in os.environ.items() if k != "EC2OPS_TEST_KILL_AT"}
    env["PYTHONPATH"] = str(ROOT / ".collections")
    if kill_at:
        env["EC2OPS_TEST_KILL_AT"] = kill_at
    module = "ansible_collections.ec2ops.stack.plugins.modules.compose_deploy"
    proc = subprocess.run(
        [sys.executable, "-m", module, str(path)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    out = proc.stdout + proc.stderr
    try:
        return proc.returncode, json.loads(proc.stdout), out
    except ValueError:
        return proc.returncode, None, out


def image_id(tag):
    return docker("image", "inspect", "--format", "{{.Id}}", f"{REPO}:{tag}").stdout.strip()


@pytest.fixture
def stack(tmp_path, app_images):
    """``stack(replicas=1)`` makes a Stack; every one is taken down afterwards."""
    made = []

    def make(replicas=1):
        base = tmp_path / f"stack{len(made)}"
        base.mkdir()
        made.append(Stack(base, replicas=replicas))
        return made[-1]

    yield make
    for s in made:
        s.down()


def settled(s, service, count, seconds=20):
    """True once the service runs ``count`` containers (retired ones stop in the background)."""
    deadline = time.monotonic() + seconds
    while len(s.running(service)) != count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def assert_consistent(s):
    """History and release directories agree, nothing is left in progress, current is a good record."""
    data = s.history()
    keys = [r["key"] for r in data["releases"]]
    assert s.release_dirs() == set(keys), (s.release_dirs(), keys)
    assert not [r for r in data["releases"] if r["result"] == "in_progress"]
    current = next(r for r in data["releases"] if r["key"] == data["current"])
    assert current["result"] == "deployed"
    return data


# ----------------------------------------------------------------------------- item 1, 2
def test_redeploying_the_running_id_keeps_its_rollback_point(stack):
    s = stack()
    rc, result, out = s.deploy("abc123", version="v1")
    assert rc == 0, out
    good_env = (s.dir / ".env").read_text()
    # Same sha, bad configuration: the api takes it (it rolls out), the worker dies with it.
    s.stage_files(env={"APP_VERSION": "env-two"}, worker_command=WORKER_LEAKS)
    rc, result, out = s.deploy("abc123", version="v1")
    assert rc != 0 and result["failed"], out
    assert result["rolled_back"] is True and result["rolled_back_to"] == "abc123", result["msg"]
    assert "Rolled back to release abc123" in result["msg"] and "ALSO failed" not in result["msg"]
    assert s.served() == (200, "env-one")
    assert (s.dir / ".env").read_text() == good_env
    assert (s.dir / ".ec2ops/releases/abc123/files/.env").read_text() == good_env
    data = assert_consistent(s)
    assert [(r["key"], r["result"]) for r in data["releases"]] == [("abc123", "deployed"), ("abc123+2", "failed")]
    assert data["current"] == "abc123"


def test_a_refused_redeploy_of_the_running_id_deletes_nothing(stack):
    s = stack()
    assert s.deploy("v1")[0] == 0
    images = {"api": "127.0.0.1:1/ec2ops-test/none:v9", "worker": f"{REPO}:v1"}
    rc, result, out = s.deploy("v1", images=images, pull="missing")
    assert rc != 0 and "Nothing was changed: the running release is still v1" in result["msg"], out
    assert (s.dir / ".ec2ops/releases/v1/files/compose.yml").exists()
    assert_consistent(s)
    # The next failing deploy still has its rollback point.
    s.stage_files(env={"APP_VERSION": "env-three"})
    rc, result, out = s.deploy("v3")
    assert rc != 0 and result["rolled_back_to"] == "v1", out
    assert s.served() == (200, "env-one")
    assert_consistent(s)


# ------------------------------------------------------------------------------ item 3
KILL_POINTS = ["after-snapshot", "after-pull", "after-up:api", "after-switch:api", "after-up:worker", "verify"]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_a_killed_deploy_is_repaired_by_the_next_run(stack, kill_at):
    s = stack()
    assert s.deploy("v1")[0] == 0
    s.stage_files(env={"APP_VERSION": "env-two"})
    rc, result, out = s.deploy("v2", kill_at=kill_at, verify_seconds=4)
    assert rc == -9, f"the module was not killed at {kill_at}: {out}"
    # Users are still served, by a release that answers.
    status, version = s.served()
    assert status == 200 and version in ("env-one", "env-two"), (kill_at, status, version)
    first, second = ("rollback", "deploy") if KILL_POINTS.index(kill_at) % 2 else ("deploy", "rollback")
    for action in (first, second):
        if action == "deploy":
            s.stage_files(env={"APP_VERSION": "env-two"})
            rc, result, out = s.deploy("v2")
            assert rc == 0, out
            assert s.served() == (200, "env-two")
            assert settled(s, "api", 1) and {i for _c, i in s.running("api")} == {image_id("v2")}
        else:
            rc, result, out = s.rollback("v1")
            assert rc == 0, out
            assert s.served() == (200, "env-one")
            assert settled(s, "api", 1) and {i for _c, i in s.running("api")} == {image_id("v1")}
            assert {i for _c, i in s.running("worker")} == {image_id("v1")}
        if action == first and kill_at not in ("after-snapshot", "after-pull"):
            # The run after the kill found the journal's open attempt and said what it did.
            assert result.get("repaired", {}).get("restored") == "v1", result
            assert any("found an interrupted deploy of v2" in line for line in result["story"]), result["story"]
        # Replaced rolling containers stop in the background (stop_timeout 1 s): wait for that, bounded.
        assert settled(s, "api", 1) and len(s.running("worker")) == 1
        assert len(s.nginx.servers()) == 1
        assert_consistent(s)
    audit = [json.loads(line) for line in (s.dir / ".ec2ops/audit.log").read_text().splitlines()]
    if kill_at not in ("after-snapshot", "after-pull"):
        assert any(e["action"] == "repair" and e["result"] == "rolled_back_to" for e in audit), audit


# ------------------------------------------------------------------------------ item 4
def test_a_deploy_waiting_for_the_lock_reads_the_history_after_it_gets_it(stack):
    s = stack()
    assert s.deploy("v1")[0] == 0
    s.stage_files(env={"APP_VERSION": "env-two"})
    args_a = dict(s.args(release="v2", images={"api": f"{REPO}:v2", "worker": f"{REPO}:v2"}), verify_seconds=8)
    path = s.dir.parent / "a.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args_a}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / ".collections"))
    module = "ansible_collections.ec2ops.stack.plugins.modules.compose_deploy"
    first = subprocess.Popen([sys.executable, "-m", module, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    lock = s.dir / ".ec2ops" / "deploy.lock"
    deadline = time.monotonic() + 60
    while '"release": "v2"' not in (lock.read_text() if lock.exists() else ""):
        assert time.monotonic() < deadline and first.poll() is None, "the first deploy never took the lock"
        time.sleep(0.1)
    # A second deploy, staged elsewhere, waits for the lock; the running project's files stay v2's.
    stage_b = s.dir.parent / "stage-b"
    stage_b.mkdir()
    (stage_b / "compose.yml").write_text((s.stage / "compose.yml").read_text())
    (stage_b / ".env").write_text("APP_VERSION=env-three\n")
    args_b = dict(s.args(release="v3", images={"api": f"{REPO}:v2", "worker": f"{REPO}:v2"}), lock_timeout=120)
    args_b["source_dir"] = str(stage_b)
    rc, second, out = run_module(args_b)
    assert first.wait(timeout=120) == 0
    assert rc == 0, out
    assert second["previous_release"] == "v2"
    data = assert_consistent(s)
    assert [r["key"] for r in data["releases"]] == ["v1", "v2", "v3"]
    assert s.served() == (200, "env-three")
    # And the rollback target of v3 is v2, as it should be.
    rc, result, out = s.rollback()
    assert rc == 0 and result["release"] == "v2", out
    assert s.served() == (200, "env-two")


def test_a_deploy_refused_by_the_lock_changes_no_file(stack):
    s = stack()
    assert s.deploy("v1")[0] == 0
    before = (s.dir / ".env").read_text()
    s.stage_files(env={"APP_VERSION": "env-two"})
    with open(s.dir / ".ec2ops" / "deploy.lock", "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(json.dumps({"user": "alice", "action": "rollback", "release": "v0", "pid": 1}))
        handle.flush()
        rc, result, out = s.deploy("v2")
    assert rc != 0 and "another deploy of this project is running (user alice, release v0" in result["msg"], out
    assert result["holder"]["user"] == "alice"
    assert (s.dir / ".env").read_text() == before
    assert s.served() == (200, "env-one")


# ------------------------------------------------------------------------------ item 5
def test_failed_retries_never_evict_good_releases_and_dropped_directories_go(stack):
    s = stack()
    for release in ("v1", "v2"):
        s.stage_files(env={"APP_VERSION": f"env-{release}"})
        assert s.deploy(release, keep_releases=2, keep_failed=2)[0] == 0
    for _attempt in range(4):
        rc, result, out = s.deploy("v3", keep_releases=2, keep_failed=2, wait_timeout=6)
        assert rc != 0 and result["rolled_back_to"] == "v2", out
    data = assert_consistent(s)
    assert [(r["key"], r["result"]) for r in data["releases"]] == [
        ("v1", "deployed"),
        ("v2", "deployed"),
        ("v3+3", "failed"),
        ("v3+4", "failed"),
    ]
    rc, result, out = s.rollback("previous")
    assert rc == 0 and result["release"] == "v1", out
    assert s.served() == (200, "env-v1")


# ------------------------------------------------------------------------------ item 6
def test_three_replicas_roll_together_under_load_without_a_failed_request(stack):
    s = stack(replicas=3)
    assert s.deploy("v1")[0] == 0
    assert settled(s, "api", 3) and len(s.nginx.servers()) == 3
    s.stage_files(env={"APP_VERSION": "env-two"})
    load = Load(s.nginx.port, rate=60)
    load.start()
    time.sleep(1)
    rc, _result, out = s.deploy("v2")
    time.sleep(1)
    load.stop()
    assert rc == 0, out
    summary = load.summary()
    assert summary["failed"] == 0 and summary["requests"] > 100, summary
    assert settled(s, "api", 3)
    api = s.running("api")
    assert {i for _c, i in api} == {image_id("v2")}
    details = json.loads(docker("inspect", *[c for c, _i in api]).stdout)
    addresses = {f"{next(iter(c['NetworkSettings']['Networks'].values()))['IPAddress']}:8080" for c in details}
    assert set(s.nginx.servers()) == addresses
    assert set(load.first_seen) == {"env-one", "env-two"}
    state = json.loads((s.dir / ".ec2ops" / "upstreams.json").read_text())
    assert set(state["upstreams"][s.nginx.upstream]["containers"]) == {c for c, _i in api}


# ------------------------------------------------------------------- issue 17: error-rate watch
def test_the_error_watch_rolls_back_a_release_whose_api_fails_while_its_health_check_passes(stack):
    """v5's health endpoint is fine, but it answers 500 to every 10th request: under load, the verify window
    reads nginx's JSON access log (the nginx role's format), sees the rate and rolls back; a healthy release
    under the same load and watch passes."""
    s = stack()

    def watched(**more):
        args = s.args()
        args["services"]["api"]["error_watch"] = {"access_log": str(s.nginx.access_log), "max_percent": 2}
        return {"services": args["services"], "verify_seconds": 6, **more}

    assert s.deploy("v1", **watched())[0] == 0
    load = Load(s.nginx.port, rate=60)
    load.start()
    time.sleep(1)
    rc, result, out = s.deploy("v5", **watched())
    load.stop()
    assert rc != 0, out
    assert "during the 6s verify window" in result["msg"] and "% of its requests failed with 5xx" in result["msg"]
    assert result["rolled_back"] is True and s.history()["current"] == "v1"
    assert {i for _c, i in s.running("api")} == {image_id("v1")}
    assert s.served() == (200, "env-one")
    assert load.summary()["requests"] > 100

    load = Load(s.nginx.port, rate=60)
    load.start()
    time.sleep(1)
    rc, result, out = s.deploy("v2", **watched())
    time.sleep(1)
    load.stop()
    assert rc == 0, out
    assert any(line.startswith("  api: error watch: 0.0% of its requests failed") for line in result["story"]), out
    assert load.summary()["failed"] == 0, load.summary()
    assert_consistent(s)


# ------------------------------------------------------------------------------ item 7
def test_a_refused_nginx_switch_removes_the_new_containers_and_says_why(stack):
    s = stack()
    assert s.deploy("v1")[0] == 0
    refusing = s.dir.parent / "refusing-switch"
    refusing.write_text("#!/bin/sh\necho 'nginx: [emerg] host not found in upstream (TEST-ONLY refusal)' >&2\nexit 1\n")
    refusing.chmod(0o755)
    s.stage_files(env={"APP_VERSION": "env-two"})
    api_before = s.running("api")
    for _attempt in range(2):
        rc, result, out = s.deploy("v2", nginx_switch_command=str(refusing))
        assert rc != 0, out
        assert "TEST-ONLY refusal" in result["msg"] and "(compose)" not in result["msg"], result["msg"]
        assert "never received traffic and was removed" in result["msg"]
        assert "kept serving throughout" in result["msg"]
        # No container is left behind, however often it is retried.
        assert s.running("api") == api_before
        assert s.served() == (200, "env-one")
    assert_consistent(s)


def test_bad_service_options_fail_before_anything_starts(stack):
    s = stack()
    assert s.deploy("v1")[0] == 0
    before = s.running("api")
    args = s.args(release="v2", images={"api": f"{REPO}:v2"})
    args["services"]["api"]["drain_timeout"] = "30s"
    rc, result, out = run_module(args)
    assert rc != 0 and "services.api" in result["msg"] and "drain_timeout" in result["msg"], out
    args["services"]["api"]["drain_timeout"] = 5
    args["services"]["api"]["health"]["retries"] = 0
    rc, result, out = run_module(args)
    assert rc != 0 and "services.api.health.retries must be at least 1" in result["msg"], out
    assert s.running("api") == before
    assert_consistent(s)


# ------------------------------------------------------------------------------ item 8
def test_failure_output_never_shows_env_file_values(stack):
    s = stack()
    assert s.deploy("v1")[0] == 0
    s.stage_files(
        env={"APP_VERSION": "env-two", "DATABASE_URL": f"postgres://app:{SECRET}@db/app"}, worker_command=WORKER_LEAKS
    )
    rc, result, out = s.deploy("v2")
    assert rc != 0 and result["rolled_back_to"] == "v1", out
    assert "giving up" in result["msg"]  # the log excerpt is there ...
    assert "***" in result["msg"]  # ... with the connection string masked
    assert SECRET not in out
    state = s.dir / ".ec2ops"
    for name in ("audit.log", "history.json"):
        assert SECRET not in (state / name).read_text()
    assert s.served() == (200, "env-one")
