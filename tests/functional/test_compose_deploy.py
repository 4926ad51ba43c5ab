"""ec2ops.stack.compose_deploy against the real Docker engine and Compose v2 on this machine.

The app is tests/images/demo-app (ec2ops-test/demo-app:bookworm, built by the harness):
v1 and v2 are healthy, v3 answers 503 on its health endpoint (a bad release).
Each test uses its own Compose project and removes it afterwards.
"""

import fcntl
import json
import os
import pathlib
import subprocess
import time
import urllib.request
import uuid

import pytest

HERE = pathlib.Path(__file__).parent / "compose_deploy"
PLAYBOOK = HERE / "deploy.yml"
REPO = "ec2ops-test/deploy-app"

COMPOSE = """
services:
  api:
    image: {repo}:v1
    container_name: {project}-api
    ports:
      - "127.0.0.1:{port}:8080"
    environment:
      APP_VERSION: ${{APP_VERSION:-unset}}
    healthcheck:
      test: ["CMD", "curl", "-fsS", "http://127.0.0.1:8080/api/v1/health"]
      interval: 1s
      timeout: 2s
      retries: 2
  worker:
    image: {repo}:v1
    environment:
      APP_VERSION: ${{APP_VERSION:-unset}}
"""


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def project(tmp_path, app_images):
    name = f"ec2ops-cd-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    directory = tmp_path / name
    directory.mkdir()
    (directory / "compose.yml").write_text(COMPOSE.format(repo=app_images, project=name, port=port))
    (directory / ".env").write_text("APP_VERSION=env-one\n")
    os.chmod(directory / ".env", 0o600)
    yield {"dir": directory, "name": name, "port": port}
    subprocess.run(
        ["docker", "compose", "--project-directory", str(directory), "-p", name, "down", "-t", "0", "--remove-orphans"],
        capture_output=True,
        check=False,
    )


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deploy(ansible_playbook, project, **args):
    args.setdefault("project_dir", str(project["dir"]))
    args.setdefault("project_name", project["name"])
    run = ansible_playbook(PLAYBOOK, extra_vars={"d": args})
    return run, run.task("Deploy")


def served(project):
    with urllib.request.urlopen(f"http://127.0.0.1:{project['port']}/", timeout=5) as response:
        return json.loads(response.read())


def history(project):
    return json.loads((project["dir"] / ".ec2ops" / "history.json").read_text())


def audit(project):
    lines = (project["dir"] / ".ec2ops" / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def env_seen_by(project, service):
    out = docker("compose", "-p", project["name"], "exec", "-T", service, "printenv", "APP_VERSION").stdout
    return out.strip()


HEALTH = {
    "api": {"health": {"url": "http://{ip}:8080/api/v1/health", "body": '"status": "ok"', "interval": 0.5}},
    "worker": {"health": {"container": True, "interval": 0.5}},
}


def test_deploy_upgrade_idempotence_and_history(ansible_playbook, project):
    run, first = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output
    assert first["changed"] is True
    assert first["release"] == "v1" and first["previous_release"] is None
    assert served(project)["version"] == "env-one"  # APP_VERSION from .env wins over the image's ENV
    assert set(first["services"]) == {"api", "worker"}
    assert first["services"]["api"]["new_image"].startswith("sha256:")  # local images have no digest: the id
    assert first["services"]["api"]["health"] == "healthy"

    run, again = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0 and again["changed"] is False, run.output

    (project["dir"] / ".env").write_text("APP_VERSION=env-two\n")
    run, second = deploy(ansible_playbook, project, release="v2", images={"api": f"{REPO}:v2"}, services=HEALTH)
    assert run.rc == 0, run.output
    assert second["previous_release"] == "v1"
    assert served(project)["version"] == "env-two"
    assert env_seen_by(project, "worker") == "env-two"

    data = history(project)
    assert data["current"] == "v2"
    assert [r["release"] for r in data["releases"]] == ["v1", "v2"]
    v1, v2 = data["releases"]
    assert v1["requested_images"] == {} and v2["requested_images"] == {"api": f"{REPO}:v2"}
    assert v1["services"]["api"]["image_id"] != v2["services"]["api"]["image_id"]
    stored_env = project["dir"] / ".ec2ops" / "releases" / "v1" / "files" / ".env"
    assert stored_env.read_text() == "APP_VERSION=env-one\n"
    assert stored_env.stat().st_mode & 0o777 == 0o600
    assert (project["dir"] / ".ec2ops").stat().st_mode & 0o777 == 0o700
    assert [(e["release"], e["result"]) for e in audit(project)] == [("v1", "deployed"), ("v2", "deployed")]


def test_failed_health_rolls_back_to_the_previous_release_exactly(ansible_playbook, project):
    run, _result = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output
    (project["dir"] / ".env").write_text("APP_VERSION=env-bad\n")
    started = time.monotonic()
    run, failed = deploy(
        ansible_playbook, project, release="v3", images={"api": f"{REPO}:v3"}, services=HEALTH, wait_timeout=8
    )
    elapsed = time.monotonic() - started
    assert run.rc != 0
    assert failed["failed"] is True
    assert failed["rolled_back"] is True and failed["rolled_back_to"] == "v1"
    message = failed["msg"]
    assert message.startswith("deploy failed: api: ")
    assert "503" in message and "Rolled back to release v1, which is serving and healthy" in message
    # The previous release serves again, with the environment it ran with.
    assert served(project)["version"] == "env-one"
    assert (project["dir"] / ".env").read_text() == "APP_VERSION=env-one\n"
    assert env_seen_by(project, "worker") == "env-one"
    data = history(project)
    assert data["current"] == "v1"
    assert [(r["release"], r["result"]) for r in data["releases"]] == [("v1", "deployed"), ("v3", "failed")]
    assert audit(project)[-1]["result"] == "rolled_back"
    assert elapsed < 8 + 30  # wait_timeout plus restore and playbook overhead


def test_a_release_that_fails_after_cut_over_is_rolled_back_by_the_verify_window(ansible_playbook, project):
    run, _result = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output
    run, failed = deploy(
        ansible_playbook, project, release="v4", images={"api": f"{REPO}:v4"}, services=HEALTH, verify_seconds=8
    )
    assert run.rc != 0
    assert "during the 8s verify window" in failed["msg"], failed["msg"]
    assert "Rolled back to release v1, which is serving and healthy" in failed["msg"]
    assert failed["rolled_back_to"] == "v1"
    assert served(project)["version"] == "env-one"
    assert history(project)["current"] == "v1"


def test_manual_rollback_to_previous_and_to_a_named_release(ansible_playbook, project):
    for release, image in (("v1", "v1"), ("v2", "v2")):
        (project["dir"] / ".env").write_text(f"APP_VERSION=env-{release}\n")
        images = {"api": f"{REPO}:{image}"}
        run, _result = deploy(ansible_playbook, project, release=release, images=images, services=HEALTH)
        assert run.rc == 0, run.output
    run, result = deploy(ansible_playbook, project, state="rolled_back", release="previous", services=HEALTH)
    assert run.rc == 0, run.output
    assert result["changed"] is True and result["release"] == "v1"
    assert served(project)["version"] == "env-v1"
    assert history(project)["current"] == "v1"

    run, result = deploy(ansible_playbook, project, state="rolled_back", release="v2", services=HEALTH)
    assert run.rc == 0, run.output
    assert served(project)["version"] == "env-v2"

    run, result = deploy(ansible_playbook, project, state="rolled_back", release="v0", services=HEALTH)
    assert run.rc != 0 and "release 'v0' is not in the history" in result["msg"]
    assert "v2, v1" in result["msg"]


def test_missing_image_changes_nothing(ansible_playbook, project):
    run, _result = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output
    before = docker("compose", "-p", project["name"], "ps", "-q").stdout.split()
    (project["dir"] / ".env").write_text("APP_VERSION=never-used\n")
    run, result = deploy(
        ansible_playbook,
        project,
        release="v9",
        images={"api": "127.0.0.1:1/ec2ops-test/no-such-image:v9"},
        pull="always",
    )
    assert run.rc != 0
    assert "Nothing was changed: the running release is still v1" in result["msg"]
    assert docker("compose", "-p", project["name"], "ps", "-q").stdout.split() == before
    assert (project["dir"] / ".env").read_text() == "APP_VERSION=env-one\n"
    assert served(project)["version"] == "env-one"
    assert history(project)["current"] == "v1"
    assert not (project["dir"] / ".ec2ops" / "releases" / "v9").exists()


def test_check_mode_changes_nothing(ansible_playbook, project):
    run, _result = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output
    before = docker("compose", "-p", project["name"], "ps", "-q").stdout.split()
    args = {
        "d": {
            "project_dir": str(project["dir"]),
            "project_name": project["name"],
            "release": "v2",
            "images": {"api": f"{REPO}:v2"},
        }
    }
    run = ansible_playbook(PLAYBOOK, extra_vars=args, check=True, diff=True)
    result = run.task("Deploy")
    assert run.rc == 0 and result["changed"] is True, run.output
    assert docker("compose", "-p", project["name"], "ps", "-q").stdout.split() == before
    assert history(project)["current"] == "v1"


def test_a_second_deploy_is_refused_by_the_lock(ansible_playbook, project):
    run, _result = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output
    lock_path = project["dir"] / ".ec2ops" / "deploy.lock"
    with open(lock_path, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(json.dumps({"user": "alice", "release": "v7", "pid": 4242, "started": "2026-11-22T06:00:00"}))
        handle.flush()
        run, result = deploy(ansible_playbook, project, release="v2", images={"api": f"{REPO}:v2"}, lock_timeout=1)
    assert run.rc != 0
    assert "another deploy of this project is running (user alice, release v7, pid 4242" in result["msg"]
    assert history(project)["current"] == "v1"


def test_a_release_command_gates_the_deploy_runs_once_with_the_new_env_and_marks_rollbacks(
    ansible_playbook, project, tmp_path
):
    """Issue 17: the release phase (a schema migration) on the real engine, under load through the published port."""
    from deploy_rig import under_load

    ledger = tmp_path / "ledger"
    ledger.mkdir()
    compose = (project["dir"] / "compose.yml").read_text()
    compose = compose.replace("    healthcheck:", f"    volumes:\n      - {ledger}:/ledger\n    healthcheck:", 1)
    (project["dir"] / "compose.yml").write_text(compose)
    run, _result = deploy(ansible_playbook, project, release="v1", services=HEALTH)
    assert run.rc == 0, run.output

    def migrating(script):
        return {**HEALTH, "api": {**HEALTH["api"], "release_command": ["sh", "-c", script]}}

    # A release command that succeeds: it sees the new release's env file, runs once, and is recorded.
    (project["dir"] / ".env").write_text("APP_VERSION=env-two\n")
    migrate = migrating('echo "$APP_VERSION" >> /ledger/ran && echo "schema moved to $APP_VERSION"')
    run, result = deploy(ansible_playbook, project, release="v2", images={"api": f"{REPO}:v2"}, services=migrate)
    assert run.rc == 0, run.output
    assert (ledger / "ran").read_text() == "env-two\n"
    assert served(project)["version"] == "env-two"
    (step,) = history(project)["releases"][-1]["release_commands"]
    assert step["exit_code"] == 0 and step["service"] == "api"
    (logged,) = [e for e in audit(project) if e["action"] == "release_command"]
    # Kept in the audit log, with every value of the release's env files masked (APP_VERSION's too).
    assert "schema moved to ***" in logged["output"] and "env-two" not in json.dumps(audit(project))
    assert not docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project['name']}",
                      "--filter", "label=com.docker.compose.oneoff=True").stdout.strip()  # fmt: skip
    run, result = deploy(ansible_playbook, project, release="v2", images={"api": f"{REPO}:v2"}, services=migrate)
    assert run.rc == 0 and result["changed"] is False, run.output
    assert (ledger / "ran").read_text() == "env-two\n"

    # A release command that fails: the deploy stops, v2 serves throughout (0 failed requests).
    (project["dir"] / ".env").write_text("APP_VERSION=env-three\n")
    failing = migrating("echo 'cannot take the lock on schema_migrations' >&2; exit 3")

    def action():
        return deploy(ansible_playbook, project, release="v3b", images={"api": f"{REPO}:v1"}, services=failing)

    summary = under_load(project["port"], 50, action, "env-three", settle=2)
    run, result = summary["outcome"]
    assert run.rc != 0
    assert "release command of api" in result["msg"] and "exited with code 3" in result["msg"]
    assert "cannot take the lock" in result["msg"] and "release v2 kept serving" in result["msg"]
    assert summary["failed"] == 0 and summary["requests"] > 50, summary
    assert served(project)["version"] == "env-two" and history(project)["current"] == "v2"

    # Rolling back across v2's release command: refused with the option, a warning without it.
    run, result = deploy(ansible_playbook, project, release="v1", state="rolled_back", schema_rollback="refuse")
    assert run.rc != 0 and "crosses the release command(s) of v2" in result["msg"], run.output
    assert history(project)["current"] == "v2" and served(project)["version"] == "env-two"
    run, result = deploy(ansible_playbook, project, release="v1", state="rolled_back")
    assert run.rc == 0, run.output
    assert any("database schema may be ahead of v1" in line for line in result["story"])
    assert history(project)["current"] == "v1" and served(project)["version"] == "env-one"
