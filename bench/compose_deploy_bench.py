"""Benchmark: requests failed and latency while a release is deployed through nginx.

Prints a table for four runs on this machine's Docker engine, each under a steady load
through a real nginx (a private instance on 127.0.0.1, not the system one; see
tests/functional/deploy_rig.py, shared with the functional tests):

  (a) compose_deploy, rolling strategy, v1 -> v2 (healthy)
  (b) compose_deploy, rolling strategy, v2 -> v3 (fails its health check: automatic rollback)
  (d) compose_deploy, rolling strategy, v1 -> v2 of a service with 3 replicas
  (c) the seed-style baseline: edit the image tag, `docker compose up -d` (images are local,
      so the `pull` half of `docker compose pull && docker compose up -d` is skipped)

The app (tests/images/demo-app) takes BOOT_DELAY=5 s to boot and ignores SIGTERM, as many
real services do, so `docker stop` waits its full 10 s timeout. The load is bounded: it
runs only while a deploy runs (plus a second on each side), at --rate requests/s, to
127.0.0.1 only.

Usage: .venv/bin/python bench/compose_deploy_bench.py [--rate 150] [--wait-timeout 20]
Needs: a running Docker engine with Compose v2 and the image ec2ops-test/demo-app:bookworm
(`make setup`), and nginx (`make setup` installs nginx-light). compose_deploy's options go
through the module's own argument spec (Deployer checks them), as the module's do.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Docker  # noqa: E402
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import (  # noqa: E402
    Deployer,
    DeployFailed,
)
from deploy_rig import PrivateNginx, build_demo_variant, free_port, under_load  # noqa: E402

IMAGE = "ec2ops-test/bench-app"
COMPOSE = """
services:
  api:
    image: {image}
    container_name: {name}-api
    ports:
      - "127.0.0.1:{port}:8080"
"""
# The same service with three replicas (no fixed name or port: compose numbers the copies).
COMPOSE_REPLICAS = """
services:
  api:
    image: {image}
    deploy:
      replicas: 3
"""


def sh(*argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=kw.pop("check", True), **kw)


def build_images():
    for version, fail in (("v1", "0"), ("v2", "0"), ("v3", "1")):
        build_demo_variant(
            f"{IMAGE}:{version}", f"APP_VERSION={version} FAIL_HEALTH={fail} BOOT_DELAY=5 IGNORE_SIGTERM=1"
        )


def run(argv):
    rc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return rc.returncode, rc.stdout, rc.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150, help="requests per second during each deploy")
    parser.add_argument("--wait-timeout", type=int, default=20, help="compose_deploy wait_timeout (b)")
    args = parser.parse_args()
    build_images()
    workdir = tempfile.mkdtemp(prefix="ec2ops-bench-")
    nginx = PrivateNginx(workdir)
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
    nginxes, projects = [nginx], [(project, name)]
    try:
        nginx.start("127.0.0.1:9")
        Deployer(docker, dict(params, release="v1", images={"api": f"{IMAGE}:v1"})).run()

        def deploy(release, base_params=None):
            def action():
                started = time.monotonic()
                try:
                    release_params = dict(base_params or params, release=release, images={"api": f"{IMAGE}:{release}"})
                    result = Deployer(docker, release_params).run()
                    return f"deployed {result['release']}"
                except DeployFailed as exc:
                    return f"rolled back to {exc.result.get('rolled_back_to')} after {time.monotonic() - started:.1f}s"

            return action

        rows.append(("(a) rolling v1 -> v2", under_load(nginx.port, args.rate, deploy("v2"), "v2")))
        rows.append(("(b) rolling v2 -> v3, fails", under_load(nginx.port, args.rate, deploy("v3"), "v3")))

        # (d) the same rolling deploy of a service with three replicas, behind its own nginx.
        replicas_dir = pathlib.Path(workdir) / "replicas"
        (replicas_dir / name).mkdir(parents=True)
        replicas_nginx = PrivateNginx(replicas_dir, upstream="bench_replicas").start()
        nginxes.append(replicas_nginx)
        projects.append((replicas_dir / name, f"{name}-replicas"))
        (replicas_dir / name / "compose.yml").write_text(COMPOSE_REPLICAS.format(image=f"{IMAGE}:v1"))
        replicas_params = dict(params, project_dir=str(replicas_dir / name), project_name=f"{name}-replicas")
        replicas_params["nginx_switch_command"] = str(replicas_nginx.switch)
        replicas_params["services"] = {"api": dict(params["services"]["api"], nginx_upstream="bench_replicas")}
        Deployer(docker, dict(replicas_params, release="v1", images={"api": f"{IMAGE}:v1"})).run()
        rows.append(
            (
                "(d) rolling v1 -> v2, 3 replicas",
                under_load(replicas_nginx.port, args.rate, deploy("v2", replicas_params), "v2"),
            )
        )
        rows[-1][1]["outcome"] += f"; upstream lists {len(replicas_nginx.servers())} servers"

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
        rows.append(("(c) baseline: compose up -d", under_load(nginx.port, args.rate, baseline, "v2", settle=8)))
        sh(*compose, "down", "-t", "0", check=False)
    finally:
        for server in nginxes:
            server.stop()
        for directory, project_name in projects:
            sh(
                "docker",
                "compose",
                "--project-directory",
                str(directory),
                "-p",
                project_name,
                "down",
                "-t",
                "0",
                check=False,
            )
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
