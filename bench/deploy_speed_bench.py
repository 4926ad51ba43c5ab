"""Benchmark: a release through deploy.yml against the deploy.sh it replaces, on one EC2-like host.

In one invocation, on the same converged EC2-like instance (tools/demo.sh: systemd, sshd, its own
Docker engine, reached over real SSH), under the same bounded load through the instance's nginx:

  seed        the seed's deploy.sh: over SSH, edit the tag, `docker compose pull && docker compose up -d`
              (its own project, published on a host port, behind its own nginx site)
  deploy.yml  `ansible-playbook deploy.yml -i inventories/local -e compose_app_release=<tag>` with the
              shipped settings: layers that did not change are skipped (the release goes first)
  full        the same with -e ec2ops_full_converge=true: every layer converges first, as every run
              did before layer fingerprints (the "before" of issue 14, measured in the same run)
  verify 0 s  the release-first run without compose_deploy's verify window, which the seed does not
              have: what the window costs

The app is the demo app built with BOOT_DELAY=5 (boots in 5 s) and IGNORE_SIGTERM=1 (docker stop
waits its 10 s timeout), as in the compose_deploy benchmark. It prints, per method, the wall time,
the time until the new release first answered, failed requests and p99, and the ratios to the seed.

Usage: .venv/bin/python bench/deploy_speed_bench.py [--rate 100] [--keep]
Needs what `make demo` needs (it brings up its own instance: EC2OPS_DEMO_NAME=ec2ops-speed on
172.30.242.0/24, ports 2242/8092/5021/5022; --keep leaves it up). Load goes to 127.0.0.1 only,
only while a deploy runs (plus a settle time), at --rate requests/s.
"""

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from deploy_rig import under_load  # noqa: E402

DEMO = {
    "EC2OPS_DEMO_NAME": "ec2ops-speed",
    "EC2OPS_DEMO_NET": "172.30.242",
    "EC2OPS_DEMO_SSH_PORT": "2242",
    "EC2OPS_DEMO_HTTP_PORT": "8092",
    "EC2OPS_DEMO_REGISTRY_PORT": "5021",
    "EC2OPS_DEMO_MOTO_PORT": "5022",
}
TAGS = ("b1", "b2", "b3", "b4", "b5")
SEED_COMPOSE = """services:
  gateway:
    image: {registry}/ticketing/gateway-service:{tag}
    ports:
      - "127.0.0.1:8001:8080"
    restart: unless-stopped
"""


def env():
    state = pathlib.Path(tempfile.gettempdir()) / "ec2ops-speed-state"
    values = dict(os.environ, **DEMO, EC2OPS_DEMO_STATE=str(state))
    values["PATH"] = f"{ROOT / '.venv' / 'bin'}:{values['PATH']}"
    values["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    values["EC2OPS_COMPOSE_BINARY"] = (
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", "import compose, os; print(os.path.dirname(compose.__file__))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        + "/docker-compose"
    )
    return values


def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=kw.pop("check", True), **kw)


def push_images(e):
    """The gateway at each tag: boots in 5 s and ignores SIGTERM, pushed to the demo registry."""
    registry = f"127.0.0.1:{DEMO['EC2OPS_DEMO_REGISTRY_PORT']}"
    build_env = dict(e, DOCKER_CONFIG=f"{e['EC2OPS_DEMO_STATE']}/docker-config", DOCKER_BUILDKIT="0")
    for tag in TAGS:
        dockerfile = f"FROM ec2ops-test/demo-app:bookworm\nENV APP_VERSION={tag} BOOT_DELAY=5 IGNORE_SIGTERM=1\n"
        ref = f"{registry}/ticketing/gateway-service:{tag}"
        sh(["docker", "build", "-q", "-t", ref, "-"], input=dockerfile, env=build_env)
        sh(["docker", "push", "-q", ref], env=build_env)


def ssh_argv(e, command):
    state = e["EC2OPS_DEMO_STATE"]
    return [
        "ssh", "-i", f"{state}/id_ed25519", "-o", f"UserKnownHostsFile={state}/known_hosts",
        "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "HostKeyAlias=ticketing-local-app",
        "-p", e["EC2OPS_DEMO_SSH_PORT"], "admin@127.0.0.1", command,
    ]  # fmt: skip


def bench_vars(workdir):
    """The demo's nginx plus a site for the seed project (Host: seed.local), the same in every run."""
    path = pathlib.Path(workdir) / "bench-vars.json"
    path.write_text(
        json.dumps(
            {
                "nginx_upstreams": {
                    "ticketing_gateway": {"servers": ["127.0.0.1:9"]},
                    "seed_gateway": {"servers": ["127.0.0.1:8001"], "overwrite": True},
                },
                "nginx_sites": [
                    {
                        "name": "ticketing",
                        "server_names": ["localhost", "127.0.0.1"],
                        "locations": [{"path": "/", "upstream": "ticketing_gateway"}],
                    },
                    {
                        "name": "seed",
                        "server_names": ["seed.local"],
                        "locations": [{"path": "/", "upstream": "seed_gateway"}],
                    },
                ],
            }
        )
    )
    return path


def playbook(e, release, extra_vars, *args):
    argv = ["ansible-playbook", "deploy.yml", "-i", "inventories/local", "-e", f"compose_app_release={release}"]
    argv += ["-e", f"@{extra_vars}", *args]
    return subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, check=False)


def seed_deploy(e, registry, tag):
    """deploy.sh: one SSH command, as the seed runs it."""
    compose = SEED_COMPOSE.format(registry=registry, tag=tag)
    command = (
        f"cd /opt/seed && echo {shlex.quote(compose)} | sudo tee compose.yml >/dev/null"
        " && sudo docker compose pull -q && sudo docker compose up -d"
    )
    return subprocess.run(ssh_argv(e, command), capture_output=True, text=True, check=False)


def measure(port, host, rate, action, new_version, settle):
    """The action under load, the load kept on until the new release answered (at most ``settle`` s)."""
    return under_load(port, rate, action, new_version, settle=settle, host_header=host, until_new=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100, help="requests per second during each deploy")
    parser.add_argument("--keep", action="store_true", help="leave the instance up afterwards")
    args = parser.parse_args()
    e = env()
    workdir = tempfile.mkdtemp(prefix="ec2ops-speed-")
    registry = f"{DEMO['EC2OPS_DEMO_NET']}.5:5000"
    port = int(DEMO["EC2OPS_DEMO_HTTP_PORT"])
    extra = bench_vars(workdir)
    try:
        sh(["bash", "tools/demo.sh", "target"], cwd=ROOT, env=e)
        push_images(e)
        # The converged host: every layer, release b1, and the seed project at b1.
        first = playbook(e, "b1", extra)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
        sh(ssh_argv(e, "sudo install -d /opt/seed"), env=e)
        assert seed_deploy(e, registry, "b1").returncode == 0
        time.sleep(7)  # the seed app boots

        def run_seed():
            done = seed_deploy(e, registry, "b2")
            return "deploy.sh returned" if done.returncode == 0 else f"failed: {done.stderr[-300:]}"

        def run_playbook(release, *more):
            def action():
                done = playbook(e, release, extra, *more)
                return "deployed" if done.returncode == 0 else f"FAILED (rc {done.returncode})"

            return action

        rows = [
            ("seed: pull && up -d", measure(port, "seed.local", args.rate, run_seed, "b2", settle=30)),
            ("deploy.yml (release first)", measure(port, "localhost", args.rate, run_playbook("b2"), "b2", 30)),
            (
                "deploy.yml, every layer (before)",
                measure(port, "localhost", args.rate, run_playbook("b3", "-e", "ec2ops_full_converge=true"), "b3", 30),
            ),
            ("deploy.yml (release first), again", measure(port, "localhost", args.rate, run_playbook("b4"), "b4", 30)),
            # What the verify window costs: the seed has none (the shipped local inventory watches 5 s).
            (
                "deploy.yml (release first), verify 0 s",
                measure(
                    port, "localhost", args.rate, run_playbook("b5", "-e", "compose_app_verify_seconds=0"), "b5", 30
                ),
            ),
        ]
    finally:
        if not args.keep:
            sh(["bash", "tools/demo.sh", "down"], cwd=ROOT, env=e, check=False)
    report(rows, args.rate)


def report(rows, rate):
    seed = rows[0][1]
    title = "deploy speed benchmark: EC2-like instance over SSH; app boots in 5 s, ignores SIGTERM"
    print(f"\n{title}; {rate:.0f} req/s\n")
    print(
        f"{'method':36} {'wall s':>7} {'x seed':>6} {'served s':>8} {'x seed':>6} {'requests':>8} {'failed':>6}"
        f" {'p99 ms':>7}  outcome"
    )
    for label, r in rows:
        served = "never" if r["new_serves"] is None else f"{r['new_serves']:.1f}"
        known = r["new_serves"] is not None and seed["new_serves"] is not None
        ratio = f"{r['new_serves'] / seed['new_serves']:.2f}" if known else "-"
        print(
            f"{label:36} {r['wall']:7.1f} {r['wall'] / seed['wall']:6.2f} {served:>8} {ratio:>6} {r['requests']:8d}"
            f" {r['failed']:6d} {r['p99_ms']:7.1f}  {r['outcome']}"
        )
    print(
        "wall s: until the command returned (deploy.yml includes its 5 s verify window); served s: until the new"
        " release first answered through nginx; x seed: ratio to the seed's figure in this run."
    )
    print(json.dumps(dict(rows), default=str), file=sys.stderr)


if __name__ == "__main__":
    main()
