"""The embedded ``local`` default end to end, on the real engine, over real SSH.

One story against one target, in order:

1. ``tools/demo.sh up`` (what ``make demo``, the README's first command, runs) builds the
   EC2-like instance, the registry (ECR stand-in) and the moto server (Secrets Manager stand-in),
   runs ``deploy.yml -i inventories/local`` over SSH with a generated key and a pinned host key,
   and prints the URL and the health answer; the gateway's health is a real Postgres query and a
   real Redis PING with the passwords that came from the moto secret through ``.env``;
2. no secret value appears in anything the demo printed;
3. the deploy of release v2 runs the way AWX runs it: ansible-runner with a private data dir
   whose inventory is what AWX's inventory import makes of ``inventories/local``; its artifacts
   say successful, and only the app layer changed (host, docker and nginx were converged);
4. a release run skips the layers that did not change and converges those that did: a deleted
   docker file and a changed nginx variable are put back (issue 14);
5. a rollback is refused without confirmation, then restores v1;
6. ``tools/ssh-deploy.sh`` (what the GitHub Actions deploy job runs) deploys with the key only
   in its ssh-agent and the host key pinned from DEPLOY_KNOWN_HOSTS, and refuses a wrong host key;
7. ``tools/demo.sh down`` leaves nothing behind.

The containers, network and ports are this test's own (``ec2ops-demotest-*``, 172.30.241.0/24,
free loopback ports), so a developer's running ``make demo`` is not touched.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import awx_runner
import boto3
import pytest
import yaml

pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "tools" / "demo.sh"
NAME = "ec2ops-demotest"
NET = "172.30.241"
HOST_ALIAS = "ticketing-local-app"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Demo:
    def __init__(self, state: pathlib.Path):
        self.state = state
        self.ports = {k: _free_port() for k in ("SSH", "HTTP", "REGISTRY", "MOTO")}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_", "MOLECULE_"))}
        self.env.update(
            EC2OPS_DEMO_NAME=NAME,
            EC2OPS_DEMO_NET=NET,
            EC2OPS_DEMO_STATE=str(state),
            **{f"EC2OPS_DEMO_{k}_PORT": str(v) for k, v in self.ports.items()},
        )
        self.up: subprocess.CompletedProcess | None = None

    def run(self, *args, env=None, timeout=900):
        return subprocess.run(
            args,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def demo(self, *args):
        return self.run("bash", str(DEMO), *args)

    def playbook_env(self):
        """The environment `eval "$(tools/demo.sh env)"` gives a user (venv, ansible.cfg, demo settings)."""
        out = self.run("bash", "-c", f'eval "$(bash {DEMO} env)" && exec env -0')
        assert out.returncode == 0, out.stderr
        return dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['HTTP']}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())

    def secrets_manager(self):
        return boto3.client(
            "secretsmanager",
            endpoint_url=f"http://127.0.0.1:{self.ports['MOTO']}",
            region_name="ap-northeast-2",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def secret_values(self):
        return json.loads(self.secrets_manager().get_secret_value(SecretId="ticketing/local/app")["SecretString"])

    def instance(self, *command):
        return subprocess.run(
            ["docker", "exec", f"{NAME}-instance", *command], capture_output=True, text=True, check=False
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = Demo(tmp_path_factory.mktemp("demo-state"))
    demo.up = demo.demo("up")
    yield demo
    demo.demo("down")


@pytest.fixture
def up(demo):
    if demo.up is None or demo.up.returncode != 0:
        pytest.fail("the demo did not come up (see test_demo_command_deploys_the_app)")
    return demo


def test_demo_command_deploys_the_app(demo):
    out = demo.up
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    url = f"http://127.0.0.1:{demo.ports['HTTP']}/"
    assert f"Open:    {url}" in out.stdout
    [health_line] = [line for line in out.stdout.splitlines() if line.strip().startswith("Health:")]
    printed = json.loads(health_line.split("Health:", 1)[1])
    # The gateway authenticated to Postgres and Redis with the passwords from the moto secret.
    assert printed == {"status": "ok", "database": "ok", "redis": "ok", "version": "v1"}
    status, body = demo.get("/")
    assert (status, body["version"]) == (200, "v1")
    assert "release v1 deployed" in out.stdout


def test_demo_never_prints_a_secret(up):
    values = up.secret_values()
    assert set(values) >= {"DB_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"}
    printed = up.up.stdout + up.up.stderr
    for key, value in values.items():
        if key.endswith(("PASSWORD", "SECRET")):
            assert value not in printed, f"{key} appears in the demo output"
    # The values are on the host, in .env, readable by root only.
    env_file = up.instance("stat", "-c", "%a %U", "/opt/ticketing/.env")
    assert env_file.stdout.strip() == "600 root"
    assert f"DB_PASSWORD='{values['DB_PASSWORD']}'" in up.instance("cat", "/opt/ticketing/.env").stdout


def test_a_vvv_diff_run_never_prints_a_secret(up):
    """Issue 20: the whole deploy at -vvv with --diff (module arguments, results, file diffs) and in check mode:
    no value of the app's secret, no registry password."""
    env = up.playbook_env()
    values = [v for k, v in up.secret_values().items() if k.endswith(("PASSWORD", "SECRET", "KEY", "TOKEN"))]
    assert len(values) >= 3
    inventory = yaml.safe_load((ROOT / "inventories/local/group_vars/app.yml").read_text())
    registry_password = inventory["compose_app_registry_password"]
    for extra in ([], ["--check"]):
        run = up.run(
            "ansible-playbook", "deploy.yml", "-i", "inventories/local", "-e", "compose_app_release=v1",
            "-vvv", "--diff", *extra, env=env, timeout=900,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:]
        printed = run.stdout + run.stderr
        assert "compose_deploy" in printed and len(printed) > 10000  # it did print at -vvv
        for value in [*values, registry_password]:
            if value:
                assert value not in printed, f"a secret appears in the -vvv --diff output {extra}"


def _awx_job(up, tmp_path, playbook, extravars, timeout):
    """``playbook`` as an AWX job: AWX imports a project inventory with `ansible-inventory --list --export`
    and hands the job that result; the job runs the playbook with the survey's answers as extra vars."""
    env = up.playbook_env()
    imported = up.run(
        "ansible-inventory", "-i", "inventories/local", "--list", "--export", "--yaml", env=env, timeout=120
    )
    assert imported.returncode == 0, imported.stderr
    return awx_runner.run_job(
        tmp_path,
        playbook,
        inventory=imported.stdout,
        extravars=extravars,
        envvars={k: v for k, v in env.items() if k.startswith("EC2OPS_")},
        timeout=timeout,
    )


def test_deploy_through_ansible_runner_as_awx_does(up, tmp_path):
    job = _awx_job(up, tmp_path, "deploy.yml", {"compose_app_release": "v2"}, timeout=900)
    assert (job.rc, job.status) == (0, "successful"), job.stdout[-6000:]
    assert job.host_stat("failures", HOST_ALIAS) == 0
    changed_roles = {
        e["event_data"].get("role")
        for e in job.events
        if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")
    }
    # host, docker and nginx were converged by the demo: a full run changes only the release.
    assert changed_roles == {"compose_app"}, changed_roles
    [deployed] = job.task_events("Deploy the release")
    assert deployed["event_data"]["res"]["release"] == "v2"
    assert deployed["event_data"]["res"]["previous_release"] == "v1"
    assert up.get("/")[1]["version"] == "v2"
    assert up.get("/api/v1/health")[1]["database"] == "ok"


def _layers_said(output):
    """What 'Say which layers converge and why' printed: (skipped layers, {converging layer: reason})."""
    block = output.split("Say which layers converge and why", 1)[1].split("TASK [", 1)[0]
    converging, skipped, section = {}, [], None
    for line in block.splitlines():
        text = line.strip()
        if text.startswith("converging:"):
            section = "converging"
        elif text.startswith("skipped, nothing changed:"):
            section = "skipped"
        elif section == "converging" and ": " in text:
            layer, reason = text.split(": ", 1)
            converging[layer] = reason
        elif section == "skipped" and text.startswith("- "):
            skipped.append(text[2:])
    return skipped, converging


def test_a_release_run_skips_unchanged_layers_and_puts_drift_back(up):
    """Issue 14: the release goes first, without giving up drift correction."""
    env = up.playbook_env()
    nginx_conf = "/etc/nginx/nginx.conf"
    assert "client_max_body_size 7m;" not in up.instance("cat", nginx_conf).stdout
    # Drift on the host (a file the docker role manages is gone) and a changed nginx variable.
    assert up.instance("rm", "/etc/docker/daemon.json").returncode == 0
    run = up.run(
        "ansible-playbook", "deploy.yml", "-i", "inventories/local", "-e", "compose_app_release=v2",
        "-e", "nginx_client_max_body_size=7m", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    skipped, converging = _layers_said(run.stdout)
    assert skipped == ["host"], (skipped, converging)
    assert converging["docker"] == "/etc/docker changed on the host"
    assert converging["nginx"] == "its role, its variables or the collection changed"
    assert "live-restore" in up.instance("cat", "/etc/docker/daemon.json").stdout
    assert "client_max_body_size 7m;" in up.instance("cat", nginx_conf).stdout
    # The app's own host set-up (directories, venv, upstream sync) had nothing to do either.
    assert "TASK [ec2ops.stack.compose_app : Install the upstream sync unit]" not in run.stdout
    # The next release run puts nginx back to the inventory's settings and skips the rest; the app's
    # set-up runs again because its upstream sync was stopped on the host, and starts it again.
    sync = "ec2ops-upstream-sync-ticketing.service"
    assert up.instance("systemctl", "stop", sync).returncode == 0
    run = up.run("ansible-playbook", "deploy.yml", "-i", "inventories/local", "-e", "compose_app_release=v2", env=env)
    assert run.returncode == 0, run.stdout[-4000:]
    skipped, converging = _layers_said(run.stdout)
    assert (skipped, list(converging)) == (["docker", "host"], ["nginx"])
    assert "client_max_body_size 7m;" not in up.instance("cat", nginx_conf).stdout
    assert "TASK [ec2ops.stack.compose_app : Install the upstream sync unit]" in run.stdout
    assert up.instance("systemctl", "is-active", sync).stdout.strip() == "active"
    assert up.get("/")[1]["version"] == "v2"


def test_maintenance_playbook_switches_the_site_on_and_off(up):
    """Issue 17: the operator's maintenance.yml over SSH: a 503 page with Retry-After, then the app again."""
    env = up.playbook_env()

    def maintenance(*args):
        return up.run("ansible-playbook", "maintenance.yml", "-i", "inventories/local", *args, env=env)

    try:
        on = maintenance("-e", "site=ticketing", "-e", "state=on", "-e", json.dumps({"message": "Back at 02:00"}))
        assert on.returncode == 0, on.stdout[-3000:]
        with pytest.raises(urllib.error.HTTPError) as caught:
            up.get("/")
        assert caught.value.code == 503 and caught.value.headers["Retry-After"] == "300"
        assert "<p>Back at 02:00</p>" in caught.value.read().decode()
    finally:
        # Whatever happened above, the story's next tests need the site open.
        off = maintenance("-e", "state=off")
    assert off.returncode == 0, off.stdout[-3000:]
    assert up.get("/")[0] == 200
    refused = maintenance("-e", "state=maybe")
    assert refused.returncode != 0 and "say -e state=on or -e state=off" in refused.stdout


def test_operator_commands_read_hold_and_run_over_ssh_and_through_ansible_runner(up, tmp_path):
    """Issue 17: app.yml's commands against the instance over SSH; a hold fails a deploy naming who and why."""
    env = up.playbook_env()
    secrets = [v for k, v in up.secret_values().items() if k.endswith(("PASSWORD", "SECRET"))]

    def app(*args):
        done = up.run("ansible-playbook", "app.yml", "-i", "inventories/local", *args, env=env)
        for value in secrets:
            assert value not in done.stdout + done.stderr, f"a secret appears in app.yml {args}"
        return done

    current = json.loads(up.instance("cat", "/opt/ticketing/.ec2ops/history.json").stdout)["current"]
    status = app("-e", "do=status")
    assert status.returncode == 0, status.stdout[-3000:]
    assert f"ticketing: release {current}, deployed by " in status.stdout
    assert "deploys: not held" in status.stdout and "gateway: as released; 1/1 running, health healthy" in status.stdout
    history = app("-e", "do=history")
    assert f"* {current} " in history.stdout, history.stdout[-3000:]
    assert " deploy " in app("-e", "do=audit", "-e", "lines=5").stdout
    logs = app("-e", "do=logs", "-e", "service=gateway", "-e", "lines=5")
    assert logs.returncode == 0 and "== ticketing-gateway" in logs.stdout, logs.stdout[-3000:]

    # A hold: the deploy fails naming the holder's message and changes nothing, until unlock.
    held = app("-e", "do=lock", "-e", json.dumps({"message": "incident 42: payments down"}))
    assert held.returncode == 0, held.stdout[-3000:]
    try:
        deploy = up.run(
            "ansible-playbook", "deploy.yml", "-i", "inventories/local", "-e", "compose_app_release=v1", env=env
        )
        assert deploy.returncode != 0
        assert "are held by" in deploy.stdout and "incident 42: payments down" in deploy.stdout, deploy.stdout[-3000:]
        assert "deploys held by" in app("-e", "do=status").stdout
        assert json.loads(up.instance("cat", "/opt/ticketing/.ec2ops/history.json").stdout)["current"] == current
    finally:
        released = app("-e", "do=unlock")
    assert released.returncode == 0 and "released the hold" in released.stdout, released.stdout[-3000:]

    # run: refused without the confirmation; with it, the command runs in the release, its output masked.
    command = json.dumps({"command": ["sh", "-c", "echo url=$DATABASE_URL"]})
    refused = app("-e", "do=run", "-e", "service=gateway", "-e", command)
    assert refused.returncode != 0 and "-e confirm=yes" in refused.stdout
    ran = app("-e", "do=run", "-e", "service=gateway", "-e", command, "-e", "confirm=yes")
    assert ran.returncode == 0, ran.stdout[-3000:]
    # The release's DATABASE_URL, its password (a value of .env) masked.
    assert "url=postgres://" in ran.stdout and ":***@" in ran.stdout, ran.stdout[-3000:]

    # The same commands as AWX runs them (ansible-runner, the exported inventory).
    job = _awx_job(up, tmp_path, "app.yml", {"do": "status"}, timeout=300)
    assert (job.rc, job.status) == (0, "successful"), job.stdout[-4000:]
    assert f"ticketing: release {current}" in job.stdout


def test_moving_sshd_off_the_connected_port_is_refused_before_any_change(up):
    """Issue 20: over real SSH (the run reaches sshd on the instance's port 22), host_ssh_port 2200 would move
    sshd and the firewall away from the connection; the host role refuses it before touching anything."""
    fingerprint = ["sh", "-c", "find /etc/ssh /etc/nftables.conf /etc/nftables.d -type f | sort | xargs sha256sum"]
    before = up.instance(*fingerprint).stdout
    run = up.run(
        "ansible-playbook", "deploy.yml", "-i", "inventories/local", "--tags", "host",
        "-e", "compose_app_release=v2", "-e", "host_ssh_port=2200", env=up.playbook_env(),
    )  # fmt: skip
    assert run.returncode != 0, run.stdout[-3000:]
    assert "host_ssh_port 2200 differs from the port this run is connected on (22)" in run.stdout, run.stdout[-3000:]
    assert "host_ssh_port_change=true" in run.stdout
    assert up.instance(*fingerprint).stdout == before


def test_rollback_needs_confirmation_then_restores_the_previous_release(up):
    env = up.playbook_env()
    refused = up.run("ansible-playbook", "rollback.yml", "-i", "inventories/local", env=env)
    assert refused.returncode != 0
    assert "Confirm it with -e rollback_confirm=yes" in refused.stdout
    assert up.get("/")[1]["version"] == "v2"

    rolled = up.run(
        "ansible-playbook", "rollback.yml", "-i", "inventories/local", "-e", "rollback_confirm=yes", env=env
    )
    assert rolled.returncode == 0, rolled.stdout[-4000:]
    assert up.get("/")[1]["version"] == "v1"
    history = json.loads(up.instance("cat", "/opt/ticketing/.ec2ops/history.json").stdout)
    assert history["current"] == "v1"


def _ssh_deploy(up, known_hosts, *args):
    """tools/ssh-deploy.sh as the GitHub Actions job runs it: the key only in its agent.

    The inventory's state directory holds the public key only (no private key, no known_hosts),
    so authentication can only use the agent and host key checking only the pinned lines.
    """
    state = up.state.parent / f"{up.state.name}-ci"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    shutil.copy(up.state / "id_ed25519.pub", state / "id_ed25519.pub")
    env = {
        **up.playbook_env(),
        "EC2OPS_DEMO_STATE": str(state),
        "DEPLOY_SSH_KEY": (up.state / "id_ed25519").read_text(),
        "DEPLOY_KNOWN_HOSTS": known_hosts,
        "DEPLOY_INVENTORY": "inventories/local",
    }
    env.pop("SSH_AUTH_SOCK", None)
    return up.run("bash", "tools/ssh-deploy.sh", *args, env=env)


def test_ssh_deploy_script_uses_the_agent_and_the_pinned_host_key(up):
    pinned = (up.state / "known_hosts").read_text()
    out = _ssh_deploy(up, pinned, "deploy.yml", "--tags", "compose_app", "-e", "compose_app_release=v2")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert up.get("/")[1]["version"] == "v2"
    assert "PRIVATE KEY" not in out.stdout + out.stderr


def test_ssh_deploy_script_refuses_a_wrong_host_key(up, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other"], check=True)
    impostor = f"{HOST_ALIAS} {' '.join((tmp_path / 'other.pub').read_text().split()[:2])}\n"
    out = _ssh_deploy(up, impostor, "deploy.yml", "--tags", "compose_app", "-e", "compose_app_release=v1")
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in said or "Host key verification failed" in said, said[-3000:]
    assert "UNREACHABLE" in said
    # Nothing ran: v2 still serves.
    assert up.get("/")[1]["version"] == "v2"


def test_a_secret_rotation_is_a_secrets_only_release_and_rollback_chooses_the_env(up):
    """Issue 17: REDIS_PASSWORD changes in Secrets Manager (moto); app.yml -e do=rotate deploys the running release
    with it (Redis, in the same project, takes the new password with it); the history marks it secrets-only; a
    rollback with rollback_env=current keeps the new value, one with release takes the release's own."""
    env = up.playbook_env()
    history_file = ["cat", "/opt/ticketing/.ec2ops/history.json"]
    before = json.loads(up.instance(*history_file).stdout)
    current = next(r for r in before["releases"] if r["key"] == before["current"])
    values = up.secret_values()
    old_password, new_password = values["REDIS_PASSWORD"], "rotated-" + os.urandom(8).hex()
    up.secrets_manager().put_secret_value(
        SecretId="ticketing/local/app", SecretString=json.dumps(dict(values, REDIS_PASSWORD=new_password))
    )

    def redis_url():
        ids = up.instance("docker", "ps", "-q", "--filter", "label=com.docker.compose.service=gateway").stdout.split()
        return up.instance("docker", "exec", ids[0], "printenv", "REDIS_URL").stdout

    rotate = up.run("ansible-playbook", "app.yml", "-i", "inventories/local", "-e", "do=rotate", env=env)
    assert rotate.returncode == 0, rotate.stdout[-4000:]
    assert new_password not in rotate.stdout and old_password not in rotate.stdout
    after = json.loads(up.instance(*history_file).stdout)
    newest = after["releases"][-1]
    assert newest["secrets_only"] is True and newest["release"] == current["release"] and newest["result"] == "deployed"
    assert after["current"] == newest["key"] != current["key"]
    assert new_password in redis_url() and up.get("/api/v1/health")[1]["redis"] == "ok"

    # The release before, with today's secrets (rollback_env=current): a new attempt of it, Redis still answering.
    older = next(
        r for r in reversed(after["releases"]) if r["result"] == "deployed" and r["release"] != current["release"]
    )
    rolled = up.run(
        "ansible-playbook", "rollback.yml", "-i", "inventories/local", "-e", "rollback_confirm=yes",
        "-e", f"compose_app_rollback_to={older['release']}", "-e", "compose_app_rollback_env=current", env=env,
    )  # fmt: skip
    assert rolled.returncode == 0, rolled.stdout[-4000:]
    assert up.get("/")[1]["version"] == older["release"]
    assert new_password in redis_url() and up.get("/api/v1/health")[1]["redis"] == "ok"
    # The same release exactly as it first ran (rollback_env=release): its own .env, the old password, which
    # Redis (recreated from the same .env) takes back too.
    rolled = up.run(
        "ansible-playbook", "rollback.yml", "-i", "inventories/local", "-e", "rollback_confirm=yes",
        "-e", f"compose_app_rollback_to={older['release']}+{older['attempt']}", env=env,
    )  # fmt: skip
    assert rolled.returncode == 0, rolled.stdout[-4000:]
    assert old_password in redis_url() and up.get("/api/v1/health")[1]["redis"] == "ok"


def test_demo_down_removes_everything(up):
    out = up.demo("down")
    assert out.returncode == 0, out.stderr
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=ec2ops.demo={NAME}"], capture_output=True, text=True, check=True
    )
    assert left.stdout.strip() == ""
    assert subprocess.run(["docker", "network", "inspect", NAME], capture_output=True, check=False).returncode != 0
    assert not up.state.exists()
    up.up = None


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
