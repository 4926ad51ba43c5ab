"""TEST-ONLY stand-in for the Judge0 API (ec2ops.stack judge0 role tests). NOT JUDGE0.

``standin.py server``  HTTP API on PORT (2358): GET /about, GET /workers, POST /submissions,
                       GET /submissions/<token>; X-Auth-Token (AUTHN_HEADER) checked against
                       AUTHN_TOKEN; submissions stored in the real Postgres, queued in the real Redis.
``standin.py workers`` COUNT worker threads: a heartbeat each in Redis (what /workers counts),
                       and queued Python submissions run as a plain subprocess with a wall-time
                       limit. There is NO sandbox: never run this outside a test.

Configuration comes from the environment (compose env_file judge0.conf + the secrets file) and,
as Judge0's scripts/load-config does, from /judge0.conf when that file exists.
"""

import base64
import http.server
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

import psycopg2
import redis

HEARTBEAT_TTL = 5
PYTHON_LANGUAGE_ID = 71


def load_config():
    """The environment, with /judge0.conf (shell syntax) on top, like Judge0's load-config."""
    config = dict(os.environ)
    if os.path.exists("/judge0.conf"):
        with open("/judge0.conf", encoding="utf-8") as handle:
            for line in shlex.split(handle.read(), comments=True):
                name, sep, value = line.partition("=")
                if sep:
                    config[name] = value
    return config


CONFIG = load_config()


def setting(name, default=""):
    value = CONFIG.get(name, "")
    return value if value != "" else default


def flag(name, default):
    return setting(name, "true" if default else "false").lower() in ("true", "1", "yes")


VERSION = setting("JUDGE0_VERSION", "unknown")
QUEUE = f"standin:queue:{VERSION}"


def log(*parts):
    print("[judge0-api-standin TEST-ONLY]", *parts, file=sys.stderr, flush=True)


def redis_client():
    return redis.Redis(
        host=setting("REDIS_HOST", "localhost"),
        port=int(setting("REDIS_PORT", "6379")),
        password=setting("REDIS_PASSWORD") or None,
        socket_timeout=10,
        decode_responses=True,
    )


def wait_for(what, connect, tries=60):
    for attempt in range(tries):
        try:
            return connect()
        except (redis.RedisError, psycopg2.Error, OSError) as exc:
            if attempt == tries - 1:
                log(f"cannot reach {what}: {exc}")
                sys.exit(1)
            time.sleep(1)
    return None


def postgres_connect():
    conn = psycopg2.connect(
        host=setting("POSTGRES_HOST", "localhost"),
        port=int(setting("POSTGRES_PORT", "5432")),
        dbname=setting("POSTGRES_DB", "postgres"),
        user=setting("POSTGRES_USER", "postgres"),
        password=setting("POSTGRES_PASSWORD"),
        connect_timeout=5,
    )
    conn.autocommit = True
    return conn


def redis_ping():
    client = redis_client()
    client.ping()
    return client


# ------------------------------------------------------------------ server
class Api(http.server.BaseHTTPRequestHandler):
    server_version = "judge0-api-standin/TEST-ONLY"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request, no headers (they carry the token)
        log(self.address_string(), fmt % args)

    def reply(self, status, payload=None):
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authenticated(self, query):
        tokens = setting("AUTHN_TOKEN").split()
        if not tokens:
            return True
        header = setting("AUTHN_HEADER", "X-Auth-Token")
        provided = self.headers.get(header) or (query.get(header) or [""])[0]
        return provided in tokens

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if not self.authenticated(query):
            self.reply(401)
            return None, None, None
        return url.path.rstrip("/") or "/", query, url

    def do_GET(self):
        path, _query, _url = self.route()
        if path is None:
            return
        if path == "/about":
            if flag("STANDIN_FAIL_HEALTH", False):
                self.reply(503, {"error": "TEST-ONLY stand-in release built to fail its health check"})
                return
            self.reply(
                200,
                {
                    "version": VERSION,
                    "homepage": "TEST-ONLY stand-in, not Judge0",
                    "release": setting("STANDIN_RELEASE", "good"),
                    "hostname": socket.gethostname(),
                },
            )
        elif path == "/workers":
            client = self.server.redis
            beats = [client.get(key) for key in client.scan_iter("standin:heartbeat:*")]
            beats = [b for b in beats if b]
            total = int(setting("COUNT", "1"))
            entry = {
                "queue": VERSION,
                "size": client.llen(QUEUE),
                "total": total,
                "available": len(beats),
                "idle": beats.count("idle"),
                "working": beats.count("working"),
                "paused": 0,
                "failed": 0,
            }
            # Judge0 answers 500 when the number of live workers is not COUNT.
            self.reply(200 if total == len(beats) else 500, [entry])
        elif path.startswith("/submissions/"):
            token = path.rsplit("/", 1)[1]
            with self.server.db_lock, self.server.db.cursor() as cur:
                cur.execute("SELECT result FROM standin_submissions WHERE token = %s", (token,))
                row = cur.fetchone()
            if row is None:
                self.reply(404, {"error": "submission not found"})
            else:
                self.reply(200, json.loads(row[0]) if row[0] else {"token": token, "status": queued_status()})
        else:
            self.reply(404, {"error": "not found (TEST-ONLY stand-in)"})

    def do_POST(self):
        path, query, _url = self.route()
        if path is None:
            return
        if path != "/submissions":
            self.reply(404, {"error": "not found (TEST-ONLY stand-in)"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.reply(400, {"error": "body is not JSON"})
            return
        encoded = (query.get("base64_encoded") or ["false"])[0] == "true"
        wait = (query.get("wait") or ["false"])[0] == "true"
        if wait and not flag("ENABLE_WAIT_RESULT", True):
            self.reply(400, {"error": "wait not allowed"})
            return
        if int(body.get("language_id") or 0) != PYTHON_LANGUAGE_ID:
            self.reply(422, {"language_id": ["the TEST-ONLY stand-in runs Python (71) only"]})
            return
        if body.get("enable_network") and not flag("ALLOW_ENABLE_NETWORK", True):
            self.reply(422, {"enable_network": ["setting enable_network is not allowed"]})
            return
        source = body.get("source_code") or ""
        stdin = body.get("stdin") or ""
        if encoded:
            source = base64.b64decode(source).decode()
            stdin = base64.b64decode(stdin).decode()
        client = self.server.redis
        if client.llen(QUEUE) >= int(setting("MAX_QUEUE_SIZE", "100")):
            self.reply(503, {"error": "queue is full"})
            return
        token = str(uuid.uuid4())
        with self.server.db_lock, self.server.db.cursor() as cur:
            cur.execute("INSERT INTO standin_submissions (token, source) VALUES (%s, %s)", (token, source))
        client.rpush(QUEUE, json.dumps({"token": token, "source": source, "stdin": stdin}))
        if not wait:
            self.reply(201, {"token": token})
            return
        wall = float(setting("WALL_TIME_LIMIT", "10"))
        got = client.blpop(f"standin:result:{token}", timeout=int(wall) + 10)
        if got is None:
            self.reply(201, {"token": token, "status": queued_status()})
            return
        result = json.loads(got[1])
        if encoded:
            for key in ("stdout", "stderr"):
                if result.get(key) is not None:
                    result[key] = base64.b64encode(result[key].encode()).decode()
        self.reply(201, result)


def queued_status():
    return {"id": 1, "description": "In Queue"}


class ApiServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve():
    db = wait_for("Postgres", postgres_connect)
    with db.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS standin_submissions (token text PRIMARY KEY, source text, result text)")
    client = wait_for("Redis", redis_ping)
    # Every interface of the container: its network and the published port are the boundary.
    server = ApiServer(("0.0.0.0", int(setting("PORT", "2358"))), Api)  # noqa: S104
    server.db, server.db_lock, server.redis = db, threading.Lock(), client
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log(f"serving version {VERSION} on :{server.server_address[1]} (TEST-ONLY, not Judge0)")
    server.serve_forever()


# ----------------------------------------------------------------- workers
def run_submission(job):
    wall = float(setting("WALL_TIME_LIMIT", "10"))
    memory_kb = int(float(setting("MEMORY_LIMIT", "128000")))

    def limits():
        # Four times MEMORY_LIMIT: an address-space cap that leaves room for CPython itself.
        resource.setrlimit(resource.RLIMIT_AS, (memory_kb * 1024 * 4, memory_kb * 1024 * 4))

    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "script.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(job["source"])
        started = time.monotonic()
        try:
            proc = subprocess.run(
                ["python3", path],
                input=job["stdin"],
                capture_output=True,
                text=True,
                timeout=wall,
                cwd=workdir,
                preexec_fn=limits,
                check=False,
            )
            accepted = {"id": 3, "description": "Accepted"}
            status = accepted if proc.returncode == 0 else {"id": 11, "description": "Runtime Error (NZEC)"}
            stdout, stderr = proc.stdout, proc.stderr or None
        except subprocess.TimeoutExpired:
            status, stdout, stderr = {"id": 5, "description": "Time Limit Exceeded"}, None, None
        seconds = time.monotonic() - started
    return {
        "token": job["token"],
        "stdout": stdout,
        "stderr": stderr,
        "compile_output": None,
        "message": None,
        "time": f"{seconds:.3f}",
        "memory": None,
        "status": status,
    }


def worker(index, stop):
    client = wait_for("Redis", redis_ping)
    db = wait_for("Postgres", postgres_connect)
    key = f"standin:heartbeat:{socket.gethostname()}:{index}"
    while not stop.is_set():
        client.set(key, "idle", ex=HEARTBEAT_TTL)
        got = client.blpop(QUEUE, timeout=1)
        if got is None:
            continue
        client.set(key, "working", ex=HEARTBEAT_TTL)
        job = json.loads(got[1])
        result = run_submission(job)
        with db.cursor() as cur:
            cur.execute(
                "UPDATE standin_submissions SET result = %s WHERE token = %s", (json.dumps(result), job["token"])
            )
        client.rpush(f"standin:result:{job['token']}", json.dumps(result))
        client.expire(f"standin:result:{job['token']}", 60)
    client.delete(key)


def workers():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    count = int(setting("COUNT", "1"))
    threads = [threading.Thread(target=worker, args=(i, stop)) for i in range(count)]
    for thread in threads:
        thread.start()
    log(f"{count} worker(s) on queue {QUEUE} (TEST-ONLY, not Judge0)")
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    {"server": serve, "workers": workers}[sys.argv[1] if len(sys.argv) > 1 else "server"]()
