"""Benchmark: requests failed and latency while a release is deployed through nginx.

Prints a table for three runs on this machine's Docker engine, each under a steady load
through a real nginx (a private instance on 127.0.0.1, not the system one):

  (a) compose_deploy, rolling strategy, v1 -> v2 (healthy)
  (b) compose_deploy, rolling strategy, v2 -> v3 (fails its health check: automatic rollback)
  (c) the seed-style baseline: edit the image tag, `docker compose up -d` (images are local,
      so the `pull` half of `docker compose pull && docker compose up -d` is skipped)

The app (tests/images/demo-app) takes BOOT_DELAY=5 s to boot and ignores SIGTERM, as many
real services do, so `docker stop` waits its full 10 s timeout. The load is bounded: it
runs only while a deploy runs (plus a second on each side), at --rate requests/s, to
127.0.0.1 only.

Usage: .venv/bin/python bench/compose_deploy_bench.py [--rate 150] [--wait-timeout 20]
Needs: a running Docker engine with Compose v2 and the image ec2ops-test/demo-app:bookworm
(`make setup`), and nginx (installed with apt-get if missing).
"""

import argparse
import http.client
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Docker  # noqa: E402
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import (  # noqa: E402
    Deployer,
    DeployFailed,
)

IMAGE = "ec2ops-test/bench-app"
NGINX_CONF = """
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    include upstreams.d/*.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The nginx role's proxy defaults.
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
        }}
    }}
}}
"""
COMPOSE = """
services:
  api:
    image: {image}
    container_name: {name}-api
    ports:
      - "127.0.0.1:{port}:8080"
"""


def sh(*argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=kw.pop("check", True), **kw)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_images():
    for version, fail in (("v1", "0"), ("v2", "0"), ("v3", "1")):
        dockerfile = (
            "FROM ec2ops-test/demo-app:bookworm\n"
            f"ENV APP_VERSION={version} FAIL_HEALTH={fail} BOOT_DELAY=5 IGNORE_SIGTERM=1\n"
        )
        subprocess.run(
            ["docker", "build", "-q", "-t", f"{IMAGE}:{version}", "-"],
            input=dockerfile,
            text=True,
            capture_output=True,
            check=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )


class Nginx:
    """A private nginx with the nginx role's upstream switch script."""

    def __init__(self, workdir):
        if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            sh("apt-get", "install", "-y", "-qq", "nginx-light", env=env)
        self.dir = pathlib.Path(workdir) / "nginx"
        (self.dir / "upstreams.d").mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(d=self.dir, port=self.port))
        self.switch = self.dir / "ec2ops-nginx-upstream"
        self._render_switch_script()

    def _render_switch_script(self):
        import jinja2

        template = (ROOT / "roles/nginx/templates/ec2ops-nginx-upstream.sh.j2").read_text()
        text = jinja2.Template(template).render(
            __nginx_conf_dir=str(self.dir),
            __nginx_upstreams_dir="upstreams.d",
            __nginx_binary=shutil.which("nginx") or "/usr/sbin/nginx",
            __nginx_pid_file=str(self.dir / "nginx.pid"),
            nginx_upstream_keepalive=16,
        )
        self.switch.write_text(text)
        self.switch.chmod(0o755)

    def point_at(self, server):
        sh(str(self.switch), "bench_api", server)

    def start(self, server):
        (self.dir / "upstreams.d" / "bench_api.conf").write_text(
            f"upstream bench_api {{\n    server {server};\n    keepalive 16;\n}}\n"
        )
        sh(shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"))

    def stop(self):
        pid_file = self.dir / "nginx.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 15)
            except (ProcessLookupError, ValueError):
                pass


class Load:
    """Bounded load: ``rate`` requests/s from a few keep-alive clients until stopped."""

    def __init__(self, port, rate, clients=6):
        self.port = port
        self.interval = clients / rate
        self.clients = clients
        self.results = []  # (ok, latency seconds)
        self.first_seen = {}  # version -> monotonic time it first answered
        self.retries = 0  # requests retried after a keep-alive connection was closed under them
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []
        self.started = None

    def _client(self, offset):
        conn = None
        next_at = time.monotonic() + offset
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += self.interval
            t0 = time.monotonic()
            for attempt in (1, 2):
                reused = conn is not None
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    body = response.read()
                    ok = 200 <= response.status < 300
                    if ok:
                        version = json.loads(body).get("version")
                        with self._lock:
                            self.first_seen.setdefault(version, time.monotonic())
                    break
                except (OSError, http.client.HTTPException) as exc:
                    ok = False
                    if conn is not None:
                        conn.close()
                    conn = None
                    # A keep-alive connection the server closed as the request went out (nginx's
                    # old workers do at a reload): browsers, curl and urllib3 retry such a request
                    # once on a new connection (RFC 9112, 9.3.1), so this client does too, and counts it.
                    idle_close = isinstance(
                        exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                    )
                    if not (reused and idle_close and attempt == 1):
                        break
                    with self._lock:
                        self.retries += 1
            with self._lock:
                self.results.append((ok, time.monotonic() - t0))

    def start(self):
        self.started = time.monotonic()
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, args=(i * self.interval / self.clients,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self.seconds = time.monotonic() - self.started

    def summary(self):
        latencies = sorted(latency for _ok, latency in self.results)
        failed = sum(1 for ok, _l in self.results if not ok)
        q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
        return {
            "requests": len(self.results),
            "failed": failed,
            "rps": len(self.results) / self.seconds,
            "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000,
            "retries": self.retries,
        }


def run(argv):
    rc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return rc.returncode, rc.stdout, rc.stderr


def under_load(nginx, rate, action, new_version, settle=0.0):
    load = Load(nginx.port, rate)
    load.start()
    time.sleep(1)
    t0 = time.monotonic()
    outcome = action()
    wall = time.monotonic() - t0
    time.sleep(1 + settle)
    load.stop()
    seen = load.first_seen.get(new_version)
    return dict(load.summary(), wall=wall, outcome=outcome, new_serves=None if seen is None else seen - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150, help="requests per second during each deploy")
    parser.add_argument("--wait-timeout", type=int, default=20, help="compose_deploy wait_timeout (b)")
    args = parser.parse_args()
    build_images()
    workdir = tempfile.mkdtemp(prefix="ec2ops-bench-")
    nginx = Nginx(workdir)
    name = f"ec2ops-bench-{os.getpid()}"
    project = pathlib.Path(workdir) / name
    project.mkdir()
    (project / "compose.yml").write_text(COMPOSE.format(image=f"{IMAGE}:v1", name=name, port=free_port()))
    docker = Docker(run)
    health = {"url": "http://{ip}:8080/api/v1/health", "interval": 0.25}
    params = {
        "project_dir": str(project),
        "project_name": name,
        "services": {"api": {"strategy": "rolling", "nginx_upstream": "bench_api", "port": 8080, "health": health}},
        "nginx_switch_command": str(nginx.switch),
        "pull": "never",
        "verify_seconds": 5,
        "wait_timeout": args.wait_timeout,
        "prune_images": False,
    }
    rows = []
    try:
        nginx.start("127.0.0.1:9")
        Deployer(docker, dict(params, release="v1", images={"api": f"{IMAGE}:v1"})).deploy()

        def deploy(release):
            def action():
                started = time.monotonic()
                try:
                    release_params = dict(params, release=release, images={"api": f"{IMAGE}:{release}"})
                    result = Deployer(docker, release_params).deploy()
                    return f"deployed {result['release']}"
                except DeployFailed as exc:
                    return f"rolled back to {exc.result.get('rolled_back_to')} after {time.monotonic() - started:.1f}s"

            return action

        rows.append(("(a) rolling v1 -> v2", under_load(nginx, args.rate, deploy("v2"), "v2")))
        rows.append(("(b) rolling v2 -> v3, fails", under_load(nginx, args.rate, deploy("v3"), "v3")))

        # (c) the baseline on its own project, published on a fixed host port.
        base = pathlib.Path(workdir) / f"{name}-base"
        base.mkdir()
        port = free_port()
        (base / "compose.yml").write_text(COMPOSE.format(image=f"{IMAGE}:v1", name=f"{name}-base", port=port))
        compose = ["docker", "compose", "--project-directory", str(base), "-p", f"{name}-base"]
        sh(*compose, "up", "-d", "--wait")
        nginx.point_at(f"127.0.0.1:{port}")

        def baseline():
            (base / "compose.yml").write_text(COMPOSE.format(image=f"{IMAGE}:v2", name=f"{name}-base", port=port))
            sh(*compose, "up", "-d")
            # Done, for the person running deploy.sh; the app still boots for BOOT_DELAY seconds.
            return "compose up -d returned"

        # Keep the load on until the new container has booted, to count every failed request.
        rows.append(("(c) baseline: compose up -d", under_load(nginx, args.rate, baseline, "v2", settle=8)))
        sh(*compose, "down", "-t", "0", check=False)
    finally:
        nginx.stop()
        sh("docker", "compose", "--project-directory", str(project), "-p", name, "down", "-t", "0", check=False)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\ncompose_deploy benchmark: app boots in 5 s and ignores SIGTERM; load {args.rate:.0f} req/s via nginx\n")
    print(
        f"{'run':30} {'requests':>8} {'failed':>6} {'retried':>7} {'req/s':>5} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'new serves s':>12} {'deploy s':>8}  outcome"
    )
    for label, r in rows:
        serves = "never" if r["new_serves"] is None else f"{r['new_serves']:.1f}"
        print(
            f"{label:30} {r['requests']:8d} {r['failed']:6d} {r['retries']:7d} {r['rps']:5.0f}"
            f" {r['p50_ms']:7.1f} {r['p99_ms']:7.1f}"
            f" {serves:>12} {r['wall']:8.1f}  {r['outcome']}"
        )
    print(
        "new serves s: from the start of the deploy until the new release answered the first request;"
        " deploy s: until the command returned (compose_deploy includes its verify window);"
        " retried: requests re-sent once on a new connection after the server closed an idle keep-alive one"
        " (as browsers, curl and urllib3 do); they count as failed only if the retry failed too."
    )
    print(json.dumps(dict(rows), default=str), file=sys.stderr)


if __name__ == "__main__":
    main()
