"""ec2ops demo app: a tiny HTTP service for deploy tests, benchmarks and the local demo.

GET /                 {"version": APP_VERSION, "hostname": ...}
GET /api/v1/health    200 {"status": "ok", ...} when healthy; 503 otherwise
                      (with DATABASE_URL set, healthy means Postgres accepts the password and
                      answers SELECT 1; with REDIS_URL set, that Redis accepts AUTH and PING)

Behaviour switches (environment):
  APP_VERSION      reported version (default "dev")
  APP_PORT         listen port (default 8080)
  BOOT_DELAY       seconds to wait before listening, like a JVM service booting (default 0)
  FAIL_HEALTH      "1": the health endpoint always answers 503 (a bad release)
  FAIL_HEALTH_AFTER  seconds after boot from which the health endpoint answers 503
                   (a release that passes its first checks and dies later)
  IGNORE_SIGTERM   "1": ignore SIGTERM, as many real services do (docker stop then waits)
  FAIL_EVERY       N: every Nth request to anything but the health endpoint answers 500
                   (a release whose health check is fine while its API fails some requests)
  DATABASE_URL     postgres://user:pass@host:port/db, checked by the health endpoint
  REDIS_URL        redis://:pass@host:port/0, checked by the health endpoint
The health answer names what it checked, never a password.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("APP_VERSION", "dev")
COUNTER = {"n": 0, "lock": threading.Lock()}
HOSTNAME = socket.gethostname()
BOOTED = {"at": time.monotonic()}


def database_ok():
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return True, "no database configured"
    # Imported here: only the demo's database check needs the driver.
    import psycopg2

    try:
        with psycopg2.connect(url, connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        conn.close()
        return True, "ok"
    except psycopg2.Error as exc:
        # The class only: a driver message can quote the connection string.
        return False, f"failing ({exc.__class__.__name__})"


def redis_ok():
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return True, "no redis configured"
    parsed = urllib.parse.urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=2) as sock:
            if parsed.password:
                password = urllib.parse.unquote(parsed.password).encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password))
                if not sock.recv(64).startswith(b"+OK"):
                    return False, "failing (AUTH refused)"
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return (True, "ok") if sock.recv(64).startswith(b"+PONG") else (False, "failing (no PONG)")
    except OSError as exc:
        return False, f"failing ({exc.__class__.__name__})"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # peer's delayed ACK add 40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/api/v1/health") or self.path == "/health":
            fail_after = os.environ.get("FAIL_HEALTH_AFTER")
            late_failure = fail_after is not None and time.monotonic() - BOOTED["at"] > float(fail_after)
            if os.environ.get("FAIL_HEALTH") == "1" or late_failure:
                self._send(503, {"status": "failing", "version": VERSION})
                return
            db_ok, db_detail = database_ok()
            redis_up, redis_detail = redis_ok()
            ok = db_ok and redis_up
            self._send(
                200 if ok else 503,
                {"status": "ok" if ok else "failing", "database": db_detail, "redis": redis_detail, "version": VERSION},
            )
            return
        every = int(os.environ.get("FAIL_EVERY", "0") or 0)
        if every > 0:
            with COUNTER["lock"]:
                COUNTER["n"] += 1
                failing = COUNTER["n"] % every == 0
            if failing:
                self._send(500, {"error": "internal error", "version": VERSION})
                return
        self._send(200, {"version": VERSION, "hostname": HOSTNAME, "path": self.path})

    def log_message(self, *args):
        pass


def main():
    if os.environ.get("IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(float(os.environ.get("BOOT_DELAY", "0")))
    BOOTED["at"] = time.monotonic()  # FAIL_HEALTH_AFTER counts from when the app is up
    # All interfaces: it runs in a container and is reached through the container network.
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("APP_PORT", "8080"))), Handler)  # noqa: S104
    print(f"demo app {VERSION} listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
