# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker CLI and Compose v2 as compose_deploy uses them.

This is a private module_utils (leading underscore): no stable API.

Everything goes through one ``run(argv) -> (rc, stdout, stderr)`` callable (the
module's ``run_command``), so the host needs nothing but the docker CLI and the
Compose v2 plugin: no Python Docker SDK.
"""

import json
import re

# How docker reports a container that no longer exists (CLI 20.10 to 28).
_MISSING_RE = re.compile(r"No such (object|container)")
# ... and one that another docker rm (a background stop) is removing right now.
_GONE_RE = re.compile(r"No such (object|container)|removal of container \S+ is already in progress")


class DockerError(Exception):
    """A docker command failed: ``argv``, ``rc`` and the end of stderr are kept."""

    def __init__(self, what, argv, rc, stderr):
        self.argv = argv
        self.rc = rc
        self.stderr = (stderr or "").strip()
        tail = "\n".join(self.stderr.splitlines()[-15:])
        super().__init__(f"{what} failed (exit {rc}): {tail}" if tail else f"{what} failed (exit {rc})")


class Docker:
    def __init__(self, run, docker="docker"):
        self._run = run
        self.docker = docker

    def run_raw(self, argv):
        """Run any command (not only docker): ``(rc, stdout, stderr)``."""
        return self._run(argv)

    def call(self, what, args, ok_codes=(0,)):
        argv = [self.docker, *args]
        rc, out, err = self._run(argv)
        if rc not in ok_codes:
            raise DockerError(what, argv, rc, err)
        return out

    def inspect_containers(self, ids):
        """``docker inspect`` of containers, leaving out any removed since they were listed.

        A rolling switch stops and removes the old container in the background, so a deploy that
        follows soon after (a rollback, then a new deploy) can list a container that is gone a
        moment later; docker then prints the others and exits 1 with "No such object".
        """
        if not ids:
            return []
        argv = [self.docker, "inspect", *ids]
        rc, out, err = self._run(argv)
        errors = [line for line in (err or "").splitlines() if line.strip()]
        if rc != 0 and (not errors or not all(_MISSING_RE.search(line) for line in errors)):
            raise DockerError("docker inspect", argv, rc, err)
        return json.loads(out or "[]")

    def image_inspect(self, ref):
        argv = [self.docker, "image", "inspect", ref]
        rc, out, _err = self._run(argv)
        if rc != 0:
            return None
        data = json.loads(out or "[]")
        return data[0] if data else None

    def project_containers(self, project, service=None):
        """IDs of a project's containers (all states), oldest first."""
        args = ["ps", "-a", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = self.call("docker ps", args).split()
        details = self.inspect_containers(ids)
        details.sort(key=lambda c: c.get("Created", ""))
        return details

    def logs(self, container_id, tail=10, since=None):
        since_args = ["--since", since] if since else []
        rc, out, err = self._run([self.docker, "logs", "--tail", str(tail), *since_args, container_id])
        return (out + err).strip() if rc == 0 else ""

    def remove(self, ids):
        """``docker rm -f``; a container already gone, or being removed (a background stop), is not an error."""
        if not ids:
            return
        argv = [self.docker, "rm", "-f", *ids]
        rc, _out, err = self._run(argv)
        errors = [line for line in (err or "").splitlines() if line.strip()]
        if rc != 0 and (not errors or not all(_GONE_RE.search(line) for line in errors)):
            raise DockerError("docker rm", argv, rc, err)

    def stop_in_background(self, ids, timeout):
        """Stop and remove containers without waiting: their stop timeout stays off the deploy's path."""
        if not ids:
            return
        # setsid -f detaches; the script drops the caller's pipes first, so run() returns at once.
        script = f'exec </dev/null >/dev/null 2>&1; {self.docker} stop -t {int(timeout)} "$@"; {self.docker} rm -f "$@"'
        self._run(["setsid", "-f", "/bin/sh", "-c", script, "ec2ops-stop", *ids])

    def images(self):
        out = self.call("docker image ls", ["image", "ls", "--no-trunc", "--format", "{{json .}}"])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def remove_image(self, ref):
        rc, _out, _err = self._run([self.docker, "image", "rm", ref])
        return rc == 0


class Compose:
    """``docker compose`` for one project, with the release's files."""

    def __init__(self, docker, project_dir, project_name, files, env_files=(), profiles=()):
        self.docker = docker
        self.project_dir = project_dir
        self.project_name = project_name
        self.files = list(files)
        self.env_files = list(env_files)
        self.profiles = list(profiles)

    def _base(self, overrides):
        args = ["compose", "--project-directory", self.project_dir, "-p", self.project_name]
        for path in [*self.files, *overrides]:
            args += ["-f", path]
        for path in self.env_files:
            args += ["--env-file", path]
        for profile in self.profiles:
            args += ["--profile", profile]
        return args

    def config(self, overrides=()):
        out = self.docker.call("docker compose config", [*self._base(overrides), "config", "--format", "json"])
        return json.loads(out)

    def pull(self, services, overrides=()):
        if services:
            self.docker.call("docker compose pull", [*self._base(overrides), "pull", "--quiet", *services])

    def run_detached(self, service, command, name, overrides=()):
        """A one-off container of ``service`` running ``command`` (argv), named ``name``, left to finish."""
        args = [*self._base(overrides), "run", "--detach", "--no-deps", "--quiet-pull", "--name", name, service]
        self.docker.call("docker compose run", [*args, *command])

    def up(self, services, overrides=(), scale=None, no_recreate=False):
        args = [*self._base(overrides), "up", "--detach", "--no-deps", "--quiet-pull"]
        if no_recreate:
            args.append("--no-recreate")
        for service, count in (scale or {}).items():
            args += ["--scale", f"{service}={count}"]
        self.docker.call("docker compose up", [*args, *services])
