"""A fake docker CLI for unit tests of the Deployer: containers, images and Compose, in memory.

It stands where ``_compose_cli.Docker`` stands (same methods), and answers ``docker compose``
calls by reading the compose files the Deployer passes (real YAML, with the override's ``!reset``),
so the Deployer's own files, snapshots and history are real files in ``tmp_path``. What the real
engine does that matters here is kept: ``up --scale N --no-recreate`` adds containers with the new
configuration beside the old ones, ``up`` recreates containers whose configuration changed,
every container gets an address, and an image's behaviour decides whether its containers run,
exit or print a log line. The real engine is exercised by tests/functional.
"""

import itertools
import json

import yaml
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import DockerError

_RESET = object()


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!reset", lambda loader, node: _RESET)


class FakeDocker:
    def __init__(self):
        self.images_by_ref = {}  # ref -> {"Id", "RepoDigests", "behaviour", "logs"}
        self.containers = {}  # id -> docker inspect dict
        self.switch_calls = []  # argv of every nginx switch
        self.switch_result = (0, "switched", "")
        self.pull_fails = set()  # refs whose pull fails
        self.calls = []  # (what, args) of every compose call
        # One-off runs (release commands): command tuple -> {"exit_code", "logs", "hang"}; default exit 0.
        self.oneoff_results = {}
        self.oneoff_runs = []  # {"service", "command", "image", "files"} of every one-off run
        self._ids = itertools.count(1)
        self._ips = itertools.count(2)

    # -------------------------------------------------------------- images
    def add_image(self, ref, behaviour="ok", logs=""):
        """``behaviour``: ok (runs), exit (exits with code 3 at once), crashloop (dies and is restarted
        by its restart policy between any two looks, so it is "running" whenever it is inspected)."""
        number = len(self.images_by_ref) + 1
        self.images_by_ref[ref] = {
            "Id": f"sha256:{number:064x}",
            "RepoDigests": [],
            "behaviour": behaviour,
            "logs": logs,
        }

    def image_inspect(self, ref):
        image = self.images_by_ref.get(ref) or next((i for i in self.images_by_ref.values() if i["Id"] == ref), None)
        return dict(image) if image else None

    def images(self):
        return [{"Repository": ref.rsplit(":", 1)[0], "Tag": ref.rsplit(":", 1)[-1], "ID": i["Id"], "Digest": ""}
                for ref, i in self.images_by_ref.items()]  # fmt: skip

    def remove_image(self, ref):
        return False

    # ---------------------------------------------------------- containers
    def running(self, project, service):
        return [c for c in self.project_containers(project, service) if c["State"]["Status"] == "running"]

    def project_containers(self, project, service=None):
        found = []
        for c in self.containers.values():
            labels = c["Config"]["Labels"]
            if labels["com.docker.compose.project"] == project and service in (
                None,
                labels["com.docker.compose.service"],
            ):
                found.append(json.loads(json.dumps(c)))
        return sorted(found, key=lambda c: c["Created"])

    def _id(self, ref):
        """A container id from an id or a name."""
        return next((i for i, c in self.containers.items() if c.get("Name") == f"/{ref}"), ref)

    def inspect_containers(self, ids):
        ids = [self._id(i) for i in ids]
        for i in ids:
            container = self.containers.get(i)
            if container and container["_behaviour"] == "crashloop":
                # Restarted by its restart policy since the last look: running again, for a moment.
                container["RestartCount"] += 1
                container["State"]["StartedAt"] = f"2026-01-01T00:01:{container['RestartCount']:02d}Z"
        return [json.loads(json.dumps(self.containers[i])) for i in ids if i in self.containers]

    def logs(self, container_id, tail=10, since=None):
        return self.containers.get(self._id(container_id), {}).get("_logs", "")

    def remove(self, ids):
        for i in ids:
            self.containers.pop(self._id(i), None)

    def stop_in_background(self, ids, timeout):
        self.remove(ids)

    def run_raw(self, argv):
        self.switch_calls.append(list(argv))
        return self.switch_result

    # ------------------------------------------------------------- compose
    def call(self, what, args, ok_codes=(0,)):
        self.calls.append((what, list(args)))
        files, rest = self._parse(args)
        config = self._config(files)
        if rest[0] == "config":
            return json.dumps({"services": config})
        if rest[0] == "pull":
            for name in rest[2:]:
                if config[name]["image"] in self.pull_fails:
                    raise DockerError("docker compose pull", args, 1, f"pull access denied for {config[name]['image']}")
            return ""
        if rest[0] == "up":
            self._up(args, rest[1:], config)
            return ""
        if rest[0] == "run":
            self._run_oneoff(rest[1:], config, files)
            return ""
        raise AssertionError(f"unexpected compose call {rest}")

    def _parse(self, args):
        files, project, i = [], None, 1
        while i < len(args):
            if args[i] in ("--project-directory", "--env-file", "--profile"):
                i += 2
            elif args[i] == "-p":
                project, i = args[i + 1], i + 2
            elif args[i] == "-f":
                files.append(args[i + 1])
                i += 2
            else:
                break
        self._project = project
        return files, args[i:]

    def _config(self, files):
        services = {}
        for path in files:
            with open(path, encoding="utf-8") as handle:
                data = yaml.load(handle, Loader=_Loader) or {}  # noqa: S506 - a SafeLoader plus !reset
            for name, svc in (data.get("services") or {}).items():
                merged = services.setdefault(name, {})
                for key, value in (svc or {}).items():
                    if value is _RESET:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
        return services

    def _up(self, args, rest, config):
        scale, no_recreate, names = {}, False, []
        i = 0
        while i < len(rest):
            if rest[i] == "--scale":
                service, count = rest[i + 1].split("=")
                scale[service] = int(count)
                i += 2
                continue
            if rest[i] == "--no-recreate":
                no_recreate = True
            elif not rest[i].startswith("--"):
                names.append(rest[i])
            i += 1
        for name in names:
            svc = config[name]
            wanted = scale.get(name) or (svc.get("deploy") or {}).get("replicas") or 1
            existing = self.project_containers(self._project, name)
            signature = json.dumps(svc, sort_keys=True)
            if not no_recreate and any(c["_signature"] != signature for c in existing):
                self.remove([c["Id"] for c in existing])
                existing = []
            for _number in range(wanted - len(existing)):
                self._create(name, svc, signature)

    def _run_oneoff(self, rest, config, files):
        """``run --detach --no-deps --quiet-pull --name N service cmd...``: a one-off container that ends at once
        with the result ``oneoff_results`` gives its command (or runs on, with ``hang``)."""
        i, name = 0, None
        while rest[i].startswith("--"):
            if rest[i] == "--name":
                name, i = rest[i + 1], i + 2
            else:
                i += 1
        service, command = rest[i], tuple(rest[i + 1 :])
        if any(c.get("Name") == f"/{name}" for c in self.containers.values()):
            raise DockerError("docker compose run", rest, 1, f"container name /{name} is already in use")
        outcome = self.oneoff_results.get(command, {})
        self.oneoff_runs.append({"service": service, "command": list(command), "image": config[service]["image"],
                                 "files": list(files)})  # fmt: skip
        self._create(service, config[service], "oneoff")
        container = self.containers[max(self.containers)]
        container["Name"] = f"/{name}"
        container["Config"]["Labels"]["com.docker.compose.oneoff"] = "True"
        container["_logs"] = outcome.get("logs", "")
        if not outcome.get("hang"):
            container["State"].update(Status="exited", ExitCode=outcome.get("exit_code", 0))

    def _create(self, service, svc, signature):
        image = self.images_by_ref.get(svc["image"]) or self.image_inspect(svc["image"])
        if image is None:
            raise DockerError("docker compose up", [], 1, f"no such image {svc['image']}")
        number = next(self._ids)
        container_id = f"{number:064x}"
        exited = image["behaviour"] == "exit"
        self.containers[container_id] = {
            "Id": container_id,
            "Image": image["Id"],
            "Created": f"2026-01-01T00:00:{number:06d}",
            "State": {
                "Status": "exited" if exited else "running",
                "ExitCode": 3 if exited else 0,
                "StartedAt": "2026-01-01T00:00:00Z",
            },
            "RestartCount": 0,
            "_behaviour": image["behaviour"],
            "Config": {
                "Labels": {
                    "com.docker.compose.project": self._project,
                    "com.docker.compose.service": service,
                    "com.docker.compose.oneoff": "False",
                }
            },
            "NetworkSettings": {"Networks": {"default": {"IPAddress": f"10.9.0.{next(self._ips)}"}}},
            "_signature": signature,
            "_logs": image["logs"],
        }
