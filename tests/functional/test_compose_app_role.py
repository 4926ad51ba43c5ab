"""The compose_app role on this machine's engine: a static .env needs no AWS SDK, and files are staged.

Runs the role with connection local, under this machine's /usr/bin/python3, which has no boto3
(Debian's python3 without python3-boto3): compose_app_env alone must write .env and deploy.
The role stages .env in .ec2ops/incoming and sends the rendered compose files as text;
compose_deploy installs them.
"""

import http.server
import json
import os
import pathlib
import socket
import subprocess
import threading
import urllib.request
import uuid

import pytest

HERE = pathlib.Path(__file__).parent / "compose_app_role"
SYSTEM_PYTHON = "/usr/bin/python3"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _has_boto3(python):
    return subprocess.run([python, "-c", "import boto3"], capture_output=True, check=False).returncode == 0


@pytest.fixture
def app(tmp_path, app_images):
    name = f"ec2ops-role-{uuid.uuid4().hex[:8]}"
    yield {"name": name, "dir": tmp_path / name, "port": _free_port()}
    subprocess.run(["docker", "compose", "-p", name, "down", "-t", "0"], capture_output=True, check=False)


def test_a_static_env_deploys_without_boto3_on_the_host(ansible_playbook, app, app_images):
    if not pathlib.Path(SYSTEM_PYTHON).exists() or _has_boto3(SYSTEM_PYTHON):
        pytest.skip(f"needs {SYSTEM_PYTHON} without boto3 (the case this test is about)")
    extra = {
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "compose_app_name": app["name"],
        "compose_app_dir": str(app["dir"]),
        "compose_app_compose_files": [{"src": str(HERE / "compose.yml.j2"), "dest": "compose.yml"}],
        "compose_app_release": "v1",
        "compose_app_images": {"api": f"{app_images}:v1"},
        "compose_app_env": {"APP_VERSION": "static-one"},
        "compose_app_pull": "never",
        # The demo app's images are shared with the other tests of this run: prune none of them.
        "compose_app_prune_images": False,
        "compose_app_verify_seconds": 1,
        "app_port": app["port"],
    }
    run = ansible_playbook(HERE / "deploy.yml", extra_vars=extra)
    assert run.rc == 0, run.output
    env = app["dir"] / ".env"
    assert env.read_text() == "APP_VERSION='static-one'\n"
    assert env.stat().st_mode & 0o777 == 0o600
    assert (app["dir"] / ".ec2ops").stat().st_mode & 0o777 == 0o700
    with urllib.request.urlopen(f"http://127.0.0.1:{app['port']}/", timeout=5) as response:
        assert json.loads(response.read())["version"] == "static-one"
    # The same run again changes nothing.
    again = ansible_playbook(HERE / "deploy.yml", extra_vars=extra)
    assert again.rc == 0, again.output
    assert again.task("ec2ops.stack.compose_app : Deploy the release")["changed"] is False
    # A new value is staged by the role and installed by the module.
    extra["compose_app_env"] = {"APP_VERSION": "static-two"}
    run = ansible_playbook(HERE / "deploy.yml", extra_vars=extra)
    assert run.rc == 0, run.output
    assert (
        run.task("ec2ops.stack.compose_app : Deploy the release")["attempt"] == 2
    )  # the same release id, a new attempt
    with urllib.request.urlopen(f"http://127.0.0.1:{app['port']}/", timeout=5) as response:
        assert json.loads(response.read())["version"] == "static-two"


class _Webhook:
    """A webhook receiver on loopback that keeps every JSON body it is sent."""

    def __init__(self):
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                return

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_hears_deploys_rollbacks_and_failures(ansible_playbook, app, app_images, tmp_path):
    """Issue 17: rollback.yml never notified; now deploys, rollbacks and failed rollbacks all do, and the
    after-failure hook runs on the failure only."""
    hook = _Webhook()
    marker = tmp_path / "after-failure.txt"
    failure_hook = tmp_path / "after-failure.yml"
    failure_hook.write_text(
        "- name: Record the failure\n"
        "  ansible.builtin.copy:\n"
        f"    dest: {marker}\n"
        '    content: "{{ __compose_app_deploy.msg }}"\n'
        "    mode: '0600'\n"
    )
    extra = {
        "compose_app_name": app["name"],
        "compose_app_dir": str(app["dir"]),
        "compose_app_compose_files": [{"src": str(HERE / "compose.yml.j2"), "dest": "compose.yml"}],
        "compose_app_images": {"api": f"{app_images}:v1"},
        "compose_app_pull": "never",
        "compose_app_prune_images": False,
        "compose_app_verify_seconds": 1,
        "compose_app_notify_webhook_url": hook.url,
        "compose_app_hooks_after_failure": [str(failure_hook)],
        "app_port": app["port"],
    }
    try:
        for release, value in (("v1", "one"), ("v2", "two")):
            run = ansible_playbook(
                HERE / "deploy.yml",
                extra_vars=dict(extra, compose_app_release=release, compose_app_env={"APP_VERSION": value}),
            )
            assert run.rc == 0, run.output
        rollback = ansible_playbook(HERE / "deploy.yml", extra_vars=dict(extra, compose_app_state="rolled_back"))
        assert rollback.rc == 0, rollback.output
        assert not marker.exists()
        refused = ansible_playbook(
            HERE / "deploy.yml", extra_vars=dict(extra, compose_app_state="rolled_back", compose_app_rollback_to="nope")
        )
        assert refused.rc != 0
    finally:
        hook.close()
    assert [(b["action"], b["result"], b["release"]) for b in hook.bodies] == [
        ("deploy", "ok", "v1"),
        ("deploy", "ok", "v2"),
        ("rollback", "ok", "v1"),
        ("rollback", "failed", ""),
    ]
    assert hook.bodies[2]["previous_release"] == "v2" and "rollback to release v1 done" in hook.bodies[2]["text"]
    assert "nope" in hook.bodies[3]["failure"]
    assert "nope" in marker.read_text()
    assert hook.bodies[3]["text"].startswith(f"{app['name']} on localhost: FAILED rollback")
    assert all(b["by"] for b in hook.bodies)


def test_key_files_from_secrets_manager_reach_the_container(ansible_playbook, app, app_images, moto_server):
    """Issue 16: the table-order seed's ./keys mount, filled from a secret by the role (moto server), byte-exact and
    0400, part of the release: a rollback restores the key the older release ran with."""
    import sys

    pem = f"-----BEGIN PRIVATE KEY-----\nMIIE{uuid.uuid4().hex}\n-----END PRIVATE KEY-----"
    name = f"{app['name']}/app"
    moto_server.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"JWT_PRIVATE_KEY": pem, "APP_VERSION": "with-keys"})
    )
    extra = {
        "compose_app_name": app["name"],
        "compose_app_dir": str(app["dir"]),
        "compose_app_compose_files": [{"src": str(HERE / "compose.yml.j2"), "dest": "compose.yml"}],
        "compose_app_release": "v1",
        "compose_app_images": {"api": f"{app_images}:v1"},
        "compose_app_secrets": [{"id": name}],
        "compose_app_secrets_python": sys.executable,
        "compose_app_aws_endpoint_url": moto_server.endpoint_url,
        "compose_app_aws_region": "us-east-1",
        "compose_app_secret_files": [{"variable": "JWT_PRIVATE_KEY", "path": "keys/jwt_private.pem"}],
        "compose_app_pull": "never",
        "compose_app_prune_images": False,
        "compose_app_verify_seconds": 1,
        "app_port": app["port"],
    }
    run = ansible_playbook(HERE / "deploy.yml", extra_vars=extra)
    assert run.rc == 0, run.output
    key = app["dir"] / "keys" / "jwt_private.pem"
    assert key.read_text() == pem + "\n" and key.stat().st_mode & 0o777 == 0o400
    assert "JWT_PRIVATE_KEY" not in (app["dir"] / ".env").read_text()
    seen = subprocess.run(
        ["docker", "compose", "-p", app["name"], "exec", "-T", "api", "cat", "/keys/jwt_private.pem"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert seen.stdout == pem + "\n", seen.stderr
    assert pem.splitlines()[1] not in run.output
    again = ansible_playbook(HERE / "deploy.yml", extra_vars=extra)
    assert again.rc == 0 and again.task("ec2ops.stack.compose_app : Deploy the release")["changed"] is False, (
        again.output
    )
    # A new key is a new release of the files; a rollback puts the key the older release ran with back.
    new_pem = pem.replace("MIIE", "MIIF")
    moto_server.client("secretsmanager").put_secret_value(
        SecretId=name, SecretString=json.dumps({"JWT_PRIVATE_KEY": new_pem, "APP_VERSION": "with-keys"})
    )
    rotated = ansible_playbook(HERE / "deploy.yml", extra_vars=dict(extra, compose_app_release="v2"))
    assert rotated.rc == 0, rotated.output
    assert key.read_text() == new_pem + "\n" and key.stat().st_mode & 0o777 == 0o400
    back = ansible_playbook(HERE / "deploy.yml", extra_vars=dict(extra, compose_app_state="rolled_back"))
    assert back.rc == 0, back.output
    assert key.read_text() == pem + "\n"
    seen = subprocess.run(
        ["docker", "compose", "-p", app["name"], "exec", "-T", "api", "cat", "/keys/jwt_private.pem"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert seen.stdout == pem + "\n", seen.stderr


def test_the_spa_goes_out_with_the_release_and_back_with_the_rollback(ansible_playbook, app, app_images, tmp_path):
    """Issue 16: the table-order seeds' SPA, beside the API: one directory per release, an atomic switch of
    `current` after the API's deploy succeeded, back with a rollback, old releases pruned."""
    import tarfile

    def build(version):
        site = tmp_path / f"dist-{version}"
        (site / "assets").mkdir(parents=True, exist_ok=True)
        (site / "index.html").write_text(f"<html>{version}</html>\n")
        (site / "assets" / f"app.{version}.js").write_text("console.log(1)\n")
        archive = tmp_path / f"web-{version}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(site, arcname=".")
        return str(archive)

    web = tmp_path / "www"
    web.mkdir()
    extra = {
        "compose_app_name": app["name"],
        "compose_app_dir": str(app["dir"]),
        "compose_app_compose_files": [{"src": str(HERE / "compose.yml.j2"), "dest": "compose.yml"}],
        "compose_app_images": {"api": f"{app_images}:v1"},
        "compose_app_env": {"APP_VERSION": "spa"},
        "compose_app_pull": "never",
        "compose_app_prune_images": False,
        "compose_app_verify_seconds": 1,
        "app_port": app["port"],
    }

    def deploy(release, **more):
        spa = {"src": build(release), "dest": str(web), "keep": 2}
        return ansible_playbook(
            HERE / "deploy.yml", extra_vars=dict(extra, compose_app_release=release, compose_app_spa=spa, **more)
        )

    for release in ("r1", "r2"):
        run = deploy(release)
        assert run.rc == 0, run.output
        assert (web / "current" / "index.html").read_text() == f"<html>{release}</html>\n"
    assert os.readlink(web / "current") == "releases/r2"
    again = deploy("r2")
    assert again.rc == 0 and again.json["stats"]["localhost"]["changed"] == 0, again.output
    rollback = deploy("r2", compose_app_state="rolled_back")
    assert rollback.rc == 0, rollback.output
    assert os.readlink(web / "current") == "releases/r1"
    assert (web / "current" / "index.html").read_text() == "<html>r1</html>\n"
    run = deploy("r3")
    assert run.rc == 0 and os.readlink(web / "current") == "releases/r3"
    assert sorted(os.listdir(web / "releases")) == ["r1", "r3"]  # keep 2; the one served before stays
    refused = ansible_playbook(
        HERE / "deploy.yml", extra_vars=dict(extra, compose_app_release="r4", compose_app_spa={"src": "web.zip"})
    )
    assert refused.rc != 0 and "compose_app_spa needs src" in refused.output
