"""compose_deploy_info's reader: history, audit, hold, lock probe and containers, masked (fake docker)."""

import datetime
import fcntl
import os

from ansible_collections.ec2ops.stack.plugins.module_utils._compose_status import (
    deploy_running,
    project_status,
    read_audit,
)
from ansible_collections.ec2ops.stack.tests.unit.plugins.module_utils.test_compose_deployer import SECRET, App


def test_status_reports_releases_services_hold_and_audit_with_secrets_masked(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.run("v2", api="v2", secret_versions=[{"name": "app/prod", "version_id": "abc"}])
    app.run(None, state="locked", lock_message="freeze", deployed_by="bob")
    for c in app.docker.containers.values():
        if c["Config"]["Labels"]["com.docker.compose.service"] == "worker":
            c["_logs"] = f"worker up, db {SECRET}"
    now = datetime.datetime(2026, 1, 1, 0, 10, tzinfo=datetime.timezone.utc)
    status = project_status(app.docker, str(app.dir), "app", audit_lines=5, logs={"service": "worker"}, now=now)
    assert status["current"] == "v2"
    assert [r["key"] for r in status["releases"]] == ["v2", "v1"]
    assert status["releases"][0]["secret_versions"] == [{"name": "app/prod", "version_id": "abc"}]
    assert status["hold"]["user"] == "bob" and status["hold"]["message"] == "freeze"
    assert status["deploy_running"] is None
    assert status["audit"][-1]["action"] == "lock" and len(status["audit"]) <= 5
    assert status["services"]["api"]["as_released"] is True
    (api,) = status["services"]["api"]["containers"]
    assert api["state"] == "running" and api["running_seconds"] == 600
    assert list(status["logs"].values()) == ["worker up, db ***"]
    assert SECRET not in repr(status)


def test_a_container_that_is_not_the_release_is_reported(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.docker.remove([c["Id"] for c in app.docker.running("app", "worker")])
    status = project_status(app.docker, str(app.dir), "app")
    assert status["services"]["worker"]["as_released"] is False
    assert status["services"]["api"]["as_released"] is True


def test_the_lock_probe_names_a_running_deploy_and_never_takes_the_lock_away(tmp_path):
    path = tmp_path / "deploy.lock"
    assert deploy_running(str(path)) is None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b'{"user": "carol", "action": "deploy", "release": "v9"}')
    assert deploy_running(str(path)) is None  # written but not held: a killed run's leftovers
    other = os.open(path, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert deploy_running(str(path))["user"] == "carol"
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    os.close(fd)
    # After a probe, an exclusive lock is still free to take at once.
    probe = os.open(path, os.O_RDWR)
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(probe)


def test_the_audit_tail_keeps_the_newest_entries_and_lines_that_are_not_json(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(50)) + "not json\n")
    assert read_audit(str(path), 3) == [{"n": 48}, {"n": 49}, {"text": "not json"}]
    assert read_audit(str(path), 0) == []
    assert read_audit(str(tmp_path / "none.log"), 5) == []


def test_reports_read_well_and_stay_masked(tmp_path):
    from ansible_collections.ec2ops.stack.plugins.module_utils._compose_status import report

    app = App(tmp_path)
    app.run("v1", deployed_by="alice")
    app.run("v2", api="v2", deployed_by="bob", secret_versions=[{"name": "app/prod", "version_id": "0123456789ab"}])
    app.run(None, state="locked", lock_message="incident 42", deployed_by="carol")
    now = datetime.datetime(2026, 1, 1, 2, 5, tzinfo=datetime.timezone.utc)
    status = project_status(app.docker, str(app.dir), "app", audit_lines=10, logs={"service": "api"}, now=now)
    lines = report(status, "status")
    assert lines[0].startswith("app: release v2, deployed by bob at ")
    assert "deploys held by carol since " in lines[1] and lines[1].endswith(": incident 42")
    assert "  api: as released; 1/1 running, health none, up 2h 5m" in lines
    history = report(status, "history")
    assert history[0].startswith("* v2 ") and "by bob; secrets app/prod@01234567" in history[0]
    assert history[1].startswith("  v1 ")
    assert any(" lock - held by carol (0s): incident 42" in line for line in report(status, "audit"))
    assert report(status, "logs")[0].startswith("== ")
    assert SECRET not in repr([report(status, w) for w in ("status", "history", "audit", "logs")])
