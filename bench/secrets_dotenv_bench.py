"""Benchmark ec2ops.stack.secrets_dotenv: wall time and Secrets Manager calls for 1, 20 and 100 secrets.

Starts its own moto server on a free 127.0.0.1 port, creates secrets of 20 keys each and runs
tests/functional/secrets_dotenv/render_env.yml through ansible-playbook, once with the default
fetch path (BatchGetSecretValue, 20 ids per call) and once with every secret pinned to
AWSCURRENT (which forces one GetSecretValue per secret, the pre-batch behaviour).

API calls are counted twice, independently: ``api_calls`` as returned by the module (botocore
``before-send`` events, retries included) and the POST requests in moto's access log.

Usage: .venv/bin/python bench/secrets_dotenv_bench.py [--sizes 1,20,100] [--keys 20] [--repeat 3]
"""

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLAYBOOK = ROOT / "tests" / "functional" / "secrets_dotenv" / "render_env.yml"
TASK = "Write the .env file"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Moto:
    def __init__(self, workdir):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):  # noqa: S310 - loopback http
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"moto server did not start (see {self.log_path})") from None
                time.sleep(0.1)

    def requests(self):
        """POST requests moto has served so far (every Secrets Manager call is a POST /)."""
        self.log.flush()
        return self.log_path.read_text(errors="replace").count('"POST / HTTP')

    def client(self):
        import boto3

        return boto3.client(
            "secretsmanager",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def run_playbook(workdir, moto, secrets, dest):
    vars_file = workdir / "vars.json"
    vars_file.write_text(
        json.dumps(
            {
                "ansible_python_interpreter": sys.executable,
                "sd_endpoint_url": moto.endpoint_url,
                "sd_secrets": secrets,
                "sd_dest": str(dest),
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_"))}
    env.update(FAKE_AWS)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json",
        PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")]),
    )
    before = moto.requests()
    start = time.monotonic()
    completed = subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            *("-i", "localhost,", "-c", "local", "-e", f"@{vars_file}"),
            str(PLAYBOOK),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = time.monotonic() - start
    time.sleep(0.2)  # let moto flush its access log
    served = moto.requests() - before
    if completed.returncode != 0:
        raise SystemExit(f"ansible-playbook failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    task = json.loads(completed.stdout)["plays"][0]["tasks"][0]
    result = task["hosts"]["localhost"]
    duration = task["task"]["duration"]
    task_seconds = _seconds(duration["end"]) - _seconds(duration["start"])
    return {"wall": wall, "task": task_seconds, "api_calls": result["api_calls"], "served": served}


def _seconds(stamp):
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,20,100", help="numbers of secrets (default 1,20,100)")
    parser.add_argument("--keys", type=int, default=20, help="keys per secret (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown (default 3)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="secrets-dotenv-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        moto = Moto(workdir)
        try:
            client = moto.client()
            names = []
            for i in range(max(sizes)):
                value = {f"KEY_{i}_{k}": f"v{i}-{k} $x 'q' \"d\" #c\nline2" for k in range(args.keys)}
                name = f"bench/app-{i:03d}"
                client.create_secret(Name=name, SecretString=json.dumps(value))
                names.append(name)

            rows = []
            for size in sizes:
                for label, secrets in (
                    ("BatchGetSecretValue", names[:size]),
                    ("GetSecretValue each", [{"id": n, "version_stage": "AWSCURRENT"} for n in names[:size]]),
                ):
                    runs = [
                        run_playbook(workdir, moto, secrets, workdir / f"{size}-{label[:5]}-{r}.env")
                        for r in range(args.repeat)
                    ]
                    rows.append(
                        (
                            size,
                            size * args.keys,
                            label,
                            runs[0]["api_calls"],
                            runs[0]["served"],
                            statistics.median(r["task"] for r in runs),
                            statistics.median(r["wall"] for r in runs),
                        )
                    )
                    print(f"  measured {size} secrets, {label}", file=sys.stderr)
        finally:
            moto.stop()

    header = ("secrets", "variables", "fetch path", "api_calls", "moto requests", "task s", "playbook s")
    print(f"\nsecrets_dotenv benchmark ({args.keys} keys per secret, median of {args.repeat} runs, moto server)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for size, variables, label, calls, served, task_s, wall_s in rows:
        print(f"| {size} | {variables} | {label} | {calls} | {served} | {task_s:.2f} | {wall_s:.2f} |")


if __name__ == "__main__":
    main()
