import json
import os
import re

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils import _compose_deployer as engine
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import (
    Deployer,
    DeployError,
    DeployFailed,
    pinned_reference,
    rolling_conflicts,
    topological_order,
)
from ansible_collections.ec2ops.stack.tests.unit.plugins.module_utils.fake_docker import FakeDocker


def test_topological_order_puts_dependencies_first():
    services = {
        "api": {"depends_on": {"db": {}, "cache": {}}},
        "worker": {"depends_on": {"api": {}}},
        "db": {},
        "cache": {"depends_on": {"db": {}}},
    }
    order = topological_order(services)
    assert sorted(order) == sorted(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert order.index(dep) < order.index(name)


def test_topological_order_refuses_cycles():
    with pytest.raises(DeployError, match="cycle"):
        topological_order({"a": {"depends_on": {"b": {}}}, "b": {"depends_on": {"a": {}}}})


def test_rolling_conflicts_name_what_blocks_two_copies():
    seed_style = {"container_name": "api", "ports": [{"published": "8000", "target": 8080}]}
    assert rolling_conflicts("api", seed_style) == ["container_name: api", "ports: 8000:8080"]
    assert rolling_conflicts("api", {"ports": [{"target": 8080}]}) == []


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("reg:5000/api:v2", "reg:5000/api@sha256:bb"),
        ("reg:5000/api", "reg:5000/api@sha256:bb"),
        ("other/api:v2", "sha256:id"),
    ],
)
def test_pinned_reference_prefers_the_matching_repo_digest(image, expected):
    inspect = {"Id": "sha256:id", "RepoDigests": ["mirror/api@sha256:aa", "reg:5000/api@sha256:bb"]}
    assert pinned_reference(image, inspect) == expected


def test_override_frees_rolling_services_from_fixed_names_and_ports(tmp_path):
    params = {
        "project_dir": str(tmp_path),
        "services": {"api": {"strategy": "rolling", "nginx_upstream": "api", "port": 8080}},
    }
    deployer = Deployer(docker=None, params=params)
    own = {
        "api": {"container_name": "api", "ports": [{"published": "8000", "target": 8080}]},
        "db": {"container_name": "db", "ports": [{"published": "5432", "target": 5432}]},
    }
    path = tmp_path / "images.yml"
    deployer._write_override(str(path), {"api": "reg/api@sha256:aa"}, own)
    text = path.read_text()
    assert 'image: "reg/api@sha256:aa"' in text
    assert "container_name: !reset null" in text and "ports: !reset []" in text
    # A recreate service keeps its name and ports.
    assert text.count("!reset") == 2
    assert path.stat().st_mode & 0o777 == 0o600


def test_rolling_without_an_upstream_is_refused(tmp_path):
    with pytest.raises(DeployError, match="nginx_upstream"):
        Deployer(docker=None, params={"project_dir": str(tmp_path), "services": {"api": {"strategy": "rolling"}}})
    with pytest.raises(DeployError, match="strategy must be one of"):
        Deployer(docker=None, params={"project_dir": str(tmp_path), "services": {"api": {"strategy": "bluegreen"}}})


def test_health_headers_resolve_from_the_release_env_files_at_check_time(tmp_path):
    (tmp_path / "judge0.conf").write_text("AUTHN_HEADER='X-Auth-Token'\n")
    (tmp_path / "secrets.env").write_text("AUTHN_TOKEN=first\n")
    params = {
        "project_dir": str(tmp_path),
        "services": {"server": {"health": {"url": "http://{ip}:2358/about", "headers": {"X-T": "${AUTHN_TOKEN}"}}}},
    }
    deployer = Deployer(docker=None, params=params)
    deployer._compose(files=["compose.yml"], env_files=["judge0.conf", "secrets.env"])
    spec = deployer.health["server"]
    assert deployer._headers_for(spec) == ({"X-T": "first"}, ["first"])
    # Read again at each check: a restored env file (rollback) is what the next check uses.
    (tmp_path / "secrets.env").write_text("AUTHN_TOKEN='second'\n")
    assert deployer._headers_for(spec) == ({"X-T": "second"}, ["second"])
    (tmp_path / "secrets.env").write_text("OTHER=1\n")
    with pytest.raises(Exception, match=r"\$\{AUTHN_TOKEN\} is not set") as info:
        deployer._headers_for(spec)
    assert "second" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# Deployer.run with a fake docker (tests/unit/plugins/module_utils/fake_docker.py): the phases,
# the journal, the repair, replicas, the switch, retention and masking, without a real engine.

SECRET = "postgres://app:S3cr3t-value@db/app"
COMPOSE = """services:
  api:
    image: reg/api:v1
    deploy: {{replicas: {replicas}}}
  worker:
    image: reg/worker:v1
"""


class App:
    """A project dir, a staging dir and a fake docker; ``run(**params)`` is one compose_deploy run."""

    def __init__(self, tmp_path, replicas=1):
        self.dir = tmp_path / "app"
        self.stage = tmp_path / "stage"
        self.stage.mkdir()
        self.docker = FakeDocker()
        for version in ("v1", "v2", "v3"):
            self.docker.add_image(f"reg/api:{version}")
            self.docker.add_image(f"reg/worker:{version}")
        self.docker.add_image("reg/worker:bad", behaviour="exit", logs=f"connecting to {SECRET}\ngiving up")
        self.docker.add_image("reg/worker:crashloop", behaviour="crashloop")
        # WORKER_HOST names a service: a value that is a name of the output, not a secret.
        self.stage_files(env=f"APP=one\nDATABASE_URL={SECRET}\nWORKER_HOST=worker\n", replicas=replicas)
        self.now = [0.0]

    def stage_files(self, env, replicas=1):
        (self.stage / "compose.yml").write_text(COMPOSE.format(replicas=replicas))
        (self.stage / ".env").write_text(env)

    def params(self, release, api="v1", worker=None, **extra):
        params = {
            "project_dir": str(self.dir),
            "project_name": "app",
            "source_dir": str(self.stage),
            "release": release,
            "images": {"api": f"reg/api:{api}", "worker": f"reg/worker:{worker or api}"},
            "pull": "always",
            "prune_images": False,
            "verify_seconds": 0,
            "services": {
                "api": {"strategy": "rolling", "nginx_upstream": "app_api", "port": 8080},
                "worker": {},
            },
        }
        params.update(extra)
        return params

    def run(self, release, check_mode=False, **kw):
        def clock():
            return self.now[0]

        def sleep(seconds):
            self.now[0] += seconds

        deployer = Deployer(self.docker, self.params(release, **kw), clock=clock, sleep=sleep)
        return deployer.run(check_mode)

    def history(self):
        return json.loads((self.dir / ".ec2ops" / "history.json").read_text())

    def keys(self):
        return [(r["key"], r["result"]) for r in self.history()["releases"]]

    def dirs(self):
        return set(os.listdir(self.dir / ".ec2ops" / "releases"))

    def images(self, service):
        by_id = {i["Id"]: ref for ref, i in self.docker.images_by_ref.items()}
        return sorted(by_id[c["Image"]] for c in self.docker.running("app", service))


@pytest.fixture
def app(tmp_path):
    return lambda replicas=1: App(tmp_path, replicas)


def test_a_deploy_prepares_journals_and_records(app):
    a = app()
    result = a.run("v1")
    assert result["changed"] is True and result["attempt"] == 1
    assert a.keys() == [("v1", "deployed")] and a.history()["current"] == "v1"
    assert a.images("api") == ["reg/api:v1"] and a.images("worker") == ["reg/worker:v1"]
    assert (a.dir / ".env").read_text() == (a.stage / ".env").read_text()
    assert a.dirs() == {"v1"}
    upstreams = json.loads((a.dir / ".ec2ops" / "upstreams.json").read_text())["upstreams"]
    assert upstreams["app_api"]["containers"] == [c["Id"] for c in a.docker.running("app", "api")]
    # Nothing changed: the same release again, and nginx is not even touched when it points there.
    a.docker.switch_result = (0, "upstream app_api already points at 10.9.0.2:8080; nothing to do", "")
    again = a.run("v1")
    assert again["changed"] is False and a.keys() == [("v1", "deployed")]


def test_a_refused_attempt_leaves_no_record_no_directory_and_no_file(app):
    a = app()
    a.run("v1")
    a.run("v2", api="v2")
    before = (a.dir / ".env").read_text()
    a.stage_files(env="APP=two\n")
    a.docker.pull_fails.add("reg/api:v3")
    # The same id as the running release, and a retention change that makes the run save its history.
    with pytest.raises(DeployError, match="Nothing was changed: the running release is still v2"):
        a.run("v2", api="v3", keep_releases=1)
    assert a.keys() == [("v2", "deployed")] and a.dirs() == {"v2"}
    assert (a.dir / ".env").read_text() == before
    assert a.images("api") == ["reg/api:v2"]


def test_redeploying_the_running_id_fails_back_to_its_own_good_attempt(app):
    a = app()
    a.run("abc123")
    good = (a.dir / ".env").read_text()
    a.stage_files(env="APP=rotated-badly\n")
    with pytest.raises(DeployFailed) as info:
        a.run("abc123", worker="bad")
    assert "Rolled back to release abc123, which is serving and healthy" in str(info.value)
    assert a.keys() == [("abc123", "deployed"), ("abc123+2", "failed")]
    assert a.history()["current"] == "abc123"
    assert (a.dir / ".env").read_text() == good
    assert (a.dir / ".ec2ops/releases/abc123/files/.env").read_text() == good
    assert a.images("worker") == ["reg/worker:v1"]


def test_rolling_keeps_the_replica_count_and_switches_to_all_at_once(app):
    a = app(replicas=3)
    a.run("v1")
    old = {c["Id"] for c in a.docker.running("app", "api")}
    assert len(old) == 3
    a.run("v2", api="v2")
    new = a.docker.running("app", "api")
    assert len(new) == 3 and not old & {c["Id"] for c in new}
    last_switch = a.docker.switch_calls[-1]
    servers = [f"{c['NetworkSettings']['Networks']['default']['IPAddress']}:8080" for c in new]
    assert last_switch[-3:] == servers and last_switch[-4] == "app_api"
    assert a.history()["releases"][-1]["services"]["api"]["replicas"] == 3


def test_a_refused_switch_removes_the_new_containers_and_quotes_nginx(app):
    a = app()
    a.run("v1")
    old = [c["Id"] for c in a.docker.running("app", "api")]
    a.docker.switch_result = (1, "", "nginx -t rejected upstream app_api: [emerg] invalid host")
    for _attempt in range(2):
        with pytest.raises(DeployFailed) as info:
            a.run("v2", api="v2")
        message = str(info.value)
        assert "[emerg] invalid host" in message and "(compose)" not in message
        assert "never received traffic and was removed; release v1 kept serving throughout" in message
        assert [c["Id"] for c in a.docker.running("app", "api")] == old
    assert a.history()["current"] == "v1"


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the deployer catches it, nothing runs after it."""


@pytest.mark.parametrize("point", ["after-up:api", "after-switch:api", "after-up:worker"])
def test_the_next_run_repairs_a_killed_attempt(app, monkeypatch, point):
    a = app()
    a.run("v1")

    def fault(name):
        if name == point:
            raise _Killed(name)

    monkeypatch.setattr(engine, "fault_point", fault)
    with pytest.raises(_Killed):
        a.run("v2", api="v2")
    assert a.keys()[-1] == ("v2", "in_progress")
    monkeypatch.setattr(engine, "fault_point", lambda name: None)
    # A plain re-run of v1 (a converge) repairs: everything back on v1, and it says so.
    result = a.run("v1")
    assert result["repaired"] == {"interrupted": ["v2"], "restored": "v1"}
    assert any("found an interrupted deploy of v2" in line for line in result["story"])
    assert a.images("api") == ["reg/api:v1"] and a.images("worker") == ["reg/worker:v1"]
    assert a.keys() == [("v1", "deployed"), ("v2", "interrupted")]
    # And the release that was killed deploys as its second attempt.
    assert a.run("v2", api="v2")["attempt"] == 2
    assert a.images("api") == ["reg/api:v2"] and a.dirs() == {"v1", "v2", "v2+2"}


def test_an_unexpected_error_in_the_roll_out_still_ends_on_a_complete_release(app, monkeypatch):
    a = app()
    a.run("v1")

    def broken(self, services):
        raise RuntimeError("boom")

    monkeypatch.setattr(Deployer, "_verify", broken)
    with pytest.raises(DeployFailed) as info:
        a.run("v2", api="v2")
    assert "unexpected RuntimeError: boom" in str(info.value) and "Rolled back to release v1" in str(info.value)
    assert a.images("api") == ["reg/api:v1"] and a.images("worker") == ["reg/worker:v1"]
    assert a.keys() == [("v1", "deployed"), ("v2", "failed")]


def test_an_oserror_during_the_rollback_is_reported_not_raised(app, monkeypatch):
    a = app()
    a.run("v1")
    real = Deployer._install_files

    def install(self, record):
        if record["key"] == "v1":
            raise OSError(28, "No space left on device", str(a.dir / ".env"))
        return real(self, record)

    monkeypatch.setattr(Deployer, "_install_files", install)
    with pytest.raises(DeployFailed) as info:
        a.run("v2", worker="bad")
    assert "the rollback to v1 ALSO failed: No space left on device" in str(info.value)
    assert a.keys()[-1] == ("v2", "failed")


def test_env_values_are_masked_in_messages_history_and_audit(app):
    a = app()
    a.run("v1")
    with pytest.raises(DeployFailed) as info:
        a.run("v2", worker="bad")
    message = str(info.value)
    assert "giving up" in message and "connecting to ***" in message and SECRET not in message
    assert message.startswith("deploy failed: worker: ")  # a value equal to a service name stays readable
    for name in ("history.json", "audit.log"):
        assert SECRET not in (a.dir / ".ec2ops" / name).read_text()
    assert all(SECRET not in line for line in info.value.result["story"])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"drain_timeout": "30s"}, "services.api: "),
        ({"stop_timeout": -1}, "services.api.stop_timeout must be at least 0"),
        ({"health": {"retries": 0}}, "services.api.health.retries must be at least 1"),
        ({"strategy": "bluegreen"}, "strategy"),
        ({"health": {"unknown": 1}}, "unknown"),
    ],
)
def test_service_options_are_checked_before_anything_starts(app, change, named):
    a = app()
    params = a.params("v1")
    params["services"]["api"].update(change)
    with pytest.raises(DeployError, match=re.escape(named)):
        Deployer(a.docker, params)
    assert a.docker.calls == []


def test_retention_counts_good_releases_and_deletes_every_dropped_directory(app):
    a = app()
    a.run("v1", keep_releases=1, keep_failed=1)
    a.run("v2", api="v2", keep_releases=1, keep_failed=1)
    assert a.dirs() == {"v2"}
    for _attempt in range(2):
        with pytest.raises(DeployFailed):
            a.run("v3", api="v3", worker="bad", keep_releases=1, keep_failed=1)
    assert a.keys() == [("v2", "deployed"), ("v3+2", "failed")]
    assert a.dirs() == {"v2", "v3+2"}
    # A directory no record names (a killed run's snapshot) goes at the next run.
    (a.dir / ".ec2ops/releases/orphan").mkdir()
    a.run("v2", api="v2", keep_releases=1, keep_failed=1)
    assert "orphan" not in a.dirs()


def test_check_mode_writes_nothing(app):
    a = app()
    a.run("v1")
    before = {p: p.read_bytes() for p in (a.dir / ".ec2ops").rglob("*") if p.is_file()}
    result = a.run("v2", api="v2", check_mode=True)
    assert result["changed"] is True and result["diff"]["after"]["release"] == "v2"
    assert {p: p.read_bytes() for p in (a.dir / ".ec2ops").rglob("*") if p.is_file()} == before
    assert a.images("api") == ["reg/api:v1"]


def test_a_crash_looping_container_that_looks_running_fails_the_gate(app):
    """With a restart policy a crashing container is "running" at most looks: the restarts give it away."""
    a = app()
    a.run("v1")
    with pytest.raises(DeployFailed) as info:
        a.run("v2", worker="crashloop")
    assert "worker: container restarted 1 time(s) while it was checked (crash loop)" in str(info.value)
    assert a.images("worker") == ["reg/worker:v1"]


def test_a_state_directory_planted_as_a_symlink_is_refused_before_anything_is_written(app, tmp_path):
    """Issue 20: the app owner (who owns the project directory) replaces .ec2ops with a link."""
    a = app()
    victim = tmp_path / "victim-dir"
    victim.mkdir()
    a.dir.mkdir(exist_ok=True)
    (a.dir / ".ec2ops").symlink_to(victim)
    with pytest.raises(DeployError, match=r"\.ec2ops is a symbolic link .*Remove the link"):
        a.run("v1")
    assert list(victim.iterdir()) == []
    assert a.docker.running("app", "api") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_a_state_directory_of_another_user_is_refused(app):
    a = app()
    (a.dir / ".ec2ops").mkdir(mode=0o700, parents=True)
    os.chown(a.dir / ".ec2ops", 4321, 4321)
    with pytest.raises(DeployError, match=r"\.ec2ops belongs to uid 4321"):
        a.run("v1")
    assert a.docker.running("app", "api") == []


def test_a_loose_state_directory_is_made_private(app):
    a = app()
    (a.dir / ".ec2ops").mkdir(parents=True)
    os.chmod(a.dir / ".ec2ops", 0o755)  # noqa: S103 (what the run must tighten)
    a.run("v1")
    assert os.stat(a.dir / ".ec2ops").st_mode & 0o777 == 0o700


def test_compose_files_given_as_text_are_deployed_without_a_staged_copy(tmp_path):
    """Issue 14: the role renders its templates on the controller and sends them with the module."""
    app = App(tmp_path)
    text = (app.stage / "compose.yml").read_text()
    (app.stage / "compose.yml").unlink()
    first = app.run("v1", files=["compose.yml"], contents={"compose.yml": text})
    assert first["changed"] and app.history()["current"] == "v1"
    installed = app.dir / "compose.yml"
    assert installed.read_text() == text
    assert installed.stat().st_mode & 0o777 == 0o640
    assert not (app.stage / "compose.yml").exists()
    # The same text again is the same release: nothing to do.
    again = app.run("v1", files=["compose.yml"], contents={"compose.yml": text})
    assert "release v1 is already deployed and running; nothing to do" in again["story"]
    # A dry run with changed text shows the compose file's text before and after, and changes nothing.
    changed = text.replace("services:", "# the api gets a comment\nservices:", 1)
    plan = app.run("v2", check_mode=True, api="v2", files=["compose.yml"], contents={"compose.yml": changed})
    assert plan["diff"]["before"]["files"] == {"compose.yml": text}
    assert plan["diff"]["after"]["files"] == {"compose.yml": changed}
    assert SECRET not in json.dumps(plan["diff"])
    assert installed.read_text() == text and app.history()["current"] == "v1"
    app.run("v2", api="v2", files=["compose.yml"], contents={"compose.yml": changed})
    assert installed.read_text() == changed and app.history()["current"] == "v2"
    # Rolling back puts the earlier text back.
    app.run("v1", state="rolled_back", files=["compose.yml"])
    assert installed.read_text() == text


def test_contents_must_name_a_listed_file(tmp_path):
    app = App(tmp_path)
    with pytest.raises(DeployError, match=r"contents: 'other\.yml' is not in files or env_files"):
        app.run("v1", files=["compose.yml"], contents={"other.yml": "services: {}\n"})
    with pytest.raises(DeployError, match=r"contents: '\.\./x\.yml' must be a file name"):
        app.run("v1", files=["compose.yml"], contents={"../x.yml": "services: {}\n"})


# ---------------------------------------------------------------- issue 17: the release phase
MIGRATE = ["python", "manage.py", "migrate"]


def migrating(release_timeout=600):
    return {
        "api": {
            "strategy": "rolling",
            "nginx_upstream": "app_api",
            "port": 8080,
            "release_command": MIGRATE,
            "release_timeout": release_timeout,
        },
        "worker": {},
    }


def audit_lines(app):
    return [json.loads(line) for line in (app.dir / ".ec2ops" / "audit.log").read_text().splitlines()]


def test_a_release_command_runs_once_with_the_new_image_and_files_before_the_cut_over(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.stage_files(env=f"APP=two\nDATABASE_URL={SECRET}\n")
    app.docker.oneoff_results[tuple(MIGRATE)] = {"exit_code": 0, "logs": f"Applying 0002 on {SECRET}\nOK"}
    result = app.run("v2", api="v2", services=migrating())
    (run,) = app.docker.oneoff_runs
    assert run["service"] == "api" and run["command"] == MIGRATE
    assert run["image"] == app.docker.images_by_ref["reg/api:v2"]["Id"]  # pinned by the override
    # The attempt's own snapshot (its compose file and the new .env), not the running project's files.
    assert all("/.ec2ops/releases/v2/" in f for f in run["files"])
    assert (app.dir / ".ec2ops" / "releases" / "v2" / "files" / ".env").read_text().startswith("APP=two")
    (step,) = app.history()["releases"][-1]["release_commands"]
    assert step["service"] == "api" and step["exit_code"] == 0 and step["command"] == "python manage.py migrate"
    assert result["release"] == "v2" and app.history()["current"] == "v2"
    logged = [e for e in audit_lines(app) if e["action"] == "release_command"]
    assert logged[0]["result"] == "ok" and "Applying 0002" in logged[0]["output"]
    assert SECRET not in json.dumps(audit_lines(app)) and SECRET not in json.dumps(result)
    # The one-off container is gone, and the same release again runs nothing.
    assert not [c for c in app.docker.containers.values() if c.get("Name")]
    app.run("v2", api="v2", services=migrating())
    assert len(app.docker.oneoff_runs) == 1


def test_a_failed_release_command_stops_the_deploy_with_the_old_release_untouched(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    before = {c["Id"] for c in app.docker.running("app", "api")}
    app.docker.oneoff_results[tuple(MIGRATE)] = {"exit_code": 2, "logs": f"cannot reach {SECRET}\nmigration failed"}
    with pytest.raises(DeployFailed) as info:
        app.run("v2", api="v2", services=migrating())
    message = str(info.value)
    assert "release command of api (`python manage.py migrate`) exited with code 2" in message
    assert "release v1 kept serving" in message and "migration failed" in message
    assert SECRET not in message and SECRET not in json.dumps(info.value.result)
    assert {c["Id"] for c in app.docker.running("app", "api")} == before
    assert app.images("api") == ["reg/api:v1"]
    assert app.history()["current"] == "v1"
    assert app.keys()[-1] == ("v2", "failed")
    assert (app.dir / "compose.yml").exists() and "v2" not in (app.dir / "compose.yml").read_text()
    assert [e["result"] for e in audit_lines(app) if e["action"] == "release_command"] == ["failed"]


def test_a_release_command_that_outlives_its_timeout_is_stopped(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.docker.oneoff_results[tuple(MIGRATE)] = {"hang": True}
    with pytest.raises(DeployFailed, match="ran past its 30s timeout and was stopped"):
        app.run("v2", api="v2", services=migrating(release_timeout=30))
    assert not [c for c in app.docker.containers.values() if c.get("Name")]
    assert app.history()["current"] == "v1" and app.images("api") == ["reg/api:v1"]


def test_a_rollback_across_a_release_command_warns_or_refuses(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.run("v2", api="v2", services=migrating())
    with pytest.raises(DeployError, match=r"crosses the release command\(s\) of v2 \(api: python manage.py migrate\)"):
        app.run("v1", state="rolled_back", schema_rollback="refuse")
    assert app.history()["current"] == "v2" and app.images("api") == ["reg/api:v2"]
    result = app.run("v1", state="rolled_back")
    assert app.history()["current"] == "v1" and app.images("api") == ["reg/api:v1"]
    assert "database schema may be ahead of v1" in result["warnings"][0]
    # Forward again to v2 crosses nothing.
    assert "warnings" not in app.run("v2", state="rolled_back")


def test_a_release_that_fails_after_its_release_command_ran_is_rolled_back_with_a_warning(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    with pytest.raises(DeployFailed) as info:
        app.run("v2", api="v2", worker="bad", services=migrating())
    assert "the database schema may be ahead of release v1" in str(info.value)
    assert info.value.result["warnings"] and app.history()["current"] == "v1"


def test_release_command_options_are_checked(tmp_path):
    app = App(tmp_path)
    with pytest.raises(DeployError, match=r"services.api.release_command is the command's argv"):
        app.run("v1", services={"api": {"release_command": []}})
    with pytest.raises(DeployError, match=r"services.api.release_timeout must be at least 1"):
        app.run("v1", services={"api": {"release_command": ["true"], "release_timeout": 0}})


# ---------------------------------------------------------- issue 17: operator hold and one-off runs
def test_a_hold_refuses_deploys_and_rollbacks_naming_who_and_why_until_released(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.run("v2", api="v2")
    held = app.run(None, state="locked", lock_message="incident 42: payments down", deployed_by="alice")
    assert held["changed"] and held["hold"]["user"] == "alice"
    assert (
        app.run(None, state="locked", lock_message="incident 42: payments down", deployed_by="alice")["changed"]
        is False
    )
    for attempt in ({"release": "v3", "api": "v3"}, {"release": "v1", "state": "rolled_back"}):
        release = attempt.pop("release")
        with pytest.raises(DeployError, match=r"held by alice since .*: incident 42: payments down\. Nothing was"):
            app.run(release, **attempt)
    # A dry run says so too.
    with pytest.raises(DeployError, match="held by alice"):
        app.run("v3", check_mode=True, api="v3")
    assert app.history()["current"] == "v2" and app.images("api") == ["reg/api:v2"]
    assert app.run(None, state="unlocked")["changed"] is True
    assert app.run(None, state="unlocked")["changed"] is False
    app.run("v3", api="v3")
    assert app.history()["current"] == "v3"
    actions = [e["action"] for e in audit_lines(app)]
    assert actions.count("lock") == 1 and actions.count("unlock") == 1


def test_a_one_off_run_uses_the_current_release_and_masks_its_output(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    command = ["python", "manage.py", "shell", "-c", "print(1)"]
    app.docker.oneoff_results[tuple(command)] = {"exit_code": 0, "logs": f"connected to {SECRET}\n1"}
    result = app.run(None, state="ran", run_service="api", run_command=command, run_timeout=60)
    (run,) = app.docker.oneoff_runs
    assert run["image"] == app.docker.images_by_ref["reg/api:v1"]["Id"]
    assert all("/.ec2ops/releases/v1/" in f for f in run["files"])
    assert result["exit_code"] == 0 and result["output"] == "connected to ***\n1"
    assert [e["action"] for e in audit_lines(app)][-1] == "run"
    assert not [c for c in app.docker.containers.values() if c.get("Name")]
    app.docker.oneoff_results[("false",)] = {"exit_code": 1, "logs": "no"}
    with pytest.raises(DeployFailed, match="`false` in api exited with code 1"):
        app.run(None, state="ran", run_service="api", run_command=["false"])
    with pytest.raises(DeployError, match=r"run_service 'db' is not a service of release v1 \(services: api, worker\)"):
        app.run(None, state="ran", run_service="db", run_command=["true"])
    assert app.history()["current"] == "v1" and len(app.docker.oneoff_runs) == 2


# -------------------------------------------------------------- issue 17: secret rotation as a release
def test_a_changed_secret_alone_is_a_secrets_only_release_and_rollback_chooses_the_env(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    app.run("v2", api="v2")
    # The rotation: the same release and images, a new value in .env.
    app.stage_files(env=f"APP=rotated\nDATABASE_URL={SECRET}-new\nWORKER_HOST=worker\n")
    rotated = app.run("v2", api="v2")
    assert rotated["secrets_only"] is True and rotated["release"] == "v2"
    assert app.history()["current"] == "v2+2" and app.history()["releases"][-1]["secrets_only"] is True
    assert "APP=rotated" in (app.dir / ".env").read_text()
    assert any(line.startswith("secrets-only release") for line in rotated["story"])
    # A new image is not a secrets-only release.
    assert "secrets_only" not in app.run("v3", api="v3")
    app.run("v2", state="rolled_back")  # back to v2+2, the rotated env
    assert "APP=rotated" in (app.dir / ".env").read_text()

    # rollback_env=release (the default): v1 with the env it ran with.
    app.run("v1", state="rolled_back")
    assert "APP=one" in (app.dir / ".env").read_text() and app.images("api") == ["reg/api:v1"]
    app.run("v2", state="rolled_back")

    # rollback_env=current: v1's images and compose files with today's env, as a new attempt of v1.
    back = app.run("v1", state="rolled_back", rollback_env="current")
    assert back["rolled_back"] is True and back["rollback_env"] == "current"
    assert app.history()["current"] == "v1+2"
    assert "APP=rotated" in (app.dir / ".env").read_text() and app.images("api") == ["reg/api:v1"]
    assert SECRET not in json.dumps(back)
