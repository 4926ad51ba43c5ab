"""A deploy test rig: a private nginx (127.0.0.1, its own prefix, never the system one), a bounded
HTTP load, and variants of the demo app image.

Shared by the functional compose_deploy tests and bench/compose_deploy_bench.py:

* ``PrivateNginx(workdir, upstream)``: nginx.conf with the nginx role's proxy defaults in front of
  one upstream, and the nginx role's real switch script (ec2ops-nginx-upstream, rendered from
  roles/nginx/templates) bound to this instance; ``start(server)``, ``servers()``, ``stop()``.
* ``build_demo_variant(tag, env)``: ``FROM ec2ops-test/demo-app:bookworm`` with ``ENV env``, tagged.
* ``under_load(port, rate, action, new_version, ...)``: run a deploy under that load and summarise.
* ``Load(port, rate)``: keep-alive clients at ``rate`` requests/s until ``stop()``; counts
  failures, latency and when each app version first answered. Traffic goes to 127.0.0.1 only.
"""

import http.client
import json
import os
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

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
            proxy_pass http://{upstream};
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


ROLE_LOG_FORMAT = re.search(
    r"log_format ec2ops_json .*?'\}';", (ROOT / "roles/nginx/templates/nginx.conf.j2").read_text(), re.S
).group(0)


def build_demo_variant(tag, env):
    """Build ``tag`` from the demo app image with the ENV line ``env`` (e.g. ``APP_VERSION=v2 FAIL_HEALTH=1``)."""
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"],
        input=f"FROM ec2ops-test/demo-app:bookworm\nENV {env}\n",
        text=True,
        capture_output=True,
        check=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateNginx:
    """nginx on 127.0.0.1:<free port> in ``workdir/nginx``, with the nginx role's switch script."""

    def __init__(self, workdir, upstream="bench_api"):
        self.upstream = upstream
        self.dir = pathlib.Path(workdir) / "nginx"
        (self.dir / "upstreams.d").mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        conf = NGINX_CONF.replace("{upstream}", upstream).format(d=self.dir, port=self.port)
        # The nginx role's JSON access log, in its own format, as the error-rate watch reads it.
        self.access_log = self.dir / "access.log"
        logging = f"    {ROLE_LOG_FORMAT}\n    access_log {self.access_log} ec2ops_json;\n"
        conf = conf.replace("    access_log off;\n", logging)
        (self.dir / "nginx.conf").write_text(conf)
        self.switch = self.dir / "ec2ops-nginx-upstream"
        self._render_switch_script()

    def _render_switch_script(self):
        import jinja2

        template = (ROOT / "roles/nginx/templates/ec2ops-nginx-upstream.sh.j2").read_text()
        text = jinja2.Template(template).render(
            __nginx_conf_dir=str(self.dir),
            __nginx_upstreams_dir="upstreams.d",
            __nginx_binary=NGINX,
            __nginx_pid_file=str(self.dir / "nginx.pid"),
            nginx_upstream_keepalive=16,
        )
        self.switch.write_text(text)
        self.switch.chmod(0o755)

    def point_at(self, *servers):
        subprocess.run([str(self.switch), self.upstream, *servers], capture_output=True, text=True, check=True)

    def servers(self):
        """The servers the upstream file lists now."""
        text = (self.dir / "upstreams.d" / f"{self.upstream}.conf").read_text()
        return [line.split()[1].rstrip(";") for line in text.splitlines() if line.strip().startswith("server ")]

    def start(self, server="127.0.0.1:9"):
        (self.dir / "upstreams.d" / f"{self.upstream}.conf").write_text(
            f"upstream {self.upstream} {{\n    server {server};\n    keepalive 16;\n}}\n"
        )
        subprocess.run([NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")], check=True)
        return self

    def get(self, path="/", timeout=5):
        """``(status, parsed JSON body or None)`` of one request through this nginx."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None

    def stop(self):
        pid_file = self.dir / "nginx.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 15)
            except (ProcessLookupError, ValueError):
                pass


class Load:
    """Bounded load: ``rate`` requests/s from a few keep-alive clients until stopped."""

    def __init__(self, port, rate, clients=6, host_header=None):
        self.port = port
        self.headers = {"Host": host_header} if host_header else {}
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
                    conn.request("GET", "/", headers=self.headers)
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


def under_load(port, rate, action, new_version, settle=0.0, host_header=None, until_new=False):
    """Run ``action()`` under a ``Load`` that starts 1 s before it and stops after it.

    The load goes on ``settle`` more seconds (plus one), or with ``until_new`` until
    ``new_version`` first answered (at most ``settle`` seconds, then one more). Returns the load's
    summary with ``wall`` (seconds ``action`` took), ``outcome`` (what it returned) and
    ``new_serves`` (seconds from its start until ``new_version`` first answered, or None).
    """
    load = Load(port, rate, host_header=host_header)
    load.start()
    time.sleep(1)
    t0 = time.monotonic()
    outcome = action()
    wall = time.monotonic() - t0
    if until_new:
        deadline = time.monotonic() + settle
        while new_version not in load.first_seen and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    else:
        time.sleep(1 + settle)
    load.stop()
    seen = load.first_seen.get(new_version)
    return dict(load.summary(), wall=wall, outcome=outcome, new_serves=None if seen is None else seen - t0)
