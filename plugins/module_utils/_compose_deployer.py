# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health-checked Compose releases with automatic rollback (the engine of compose_deploy).

This is a private module_utils (leading underscore): no stable API.

Layout under ``<project_dir>/.ec2ops/`` (0700):

* ``history.json``           the release history (see _release_history)
* ``releases/<id>/``         the compose and env files the release ran with (0600), and
                             ``images.yml``, the override pinning each service's image
* ``audit.log``              one JSON line per deploy or rollback: when, who, what, result
* ``deploy.lock``            the per-project lock (see _deploy_lock)

A deploy: lock; snapshot the files the caller put in place; validate them with
``docker compose config``; pull every image (nothing has stopped yet); pin each image
to the digest just pulled; then per service, in dependency order, either ``recreate``
it and wait for its health, or roll it (start the new container beside the old, wait
for its health, switch the nginx upstream, stop the old one in the background); then
watch every service for ``verify_seconds``. Any failure restores the previous release
(files, env, pinned images) behind the same health gate and raises DeployFailed.
"""

import datetime
import json
import os
import shutil
import time

from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import write_atomic
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Compose, DockerError
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import DotenvError
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import parse as parse_dotenv
from ansible_collections.ec2ops.stack.plugins.module_utils._health import (
    HealthSpecError,
    container_state_check,
    header_references,
    http_check,
    normalize_health,
    resolve_headers,
    wait_healthy,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._release_history import (
    ReleaseHistory,
    content_digest,
    default_release_id,
    validate_release_id,
)

STATE_DIR = ".ec2ops"
STRATEGIES = ("recreate", "rolling")


class DeployError(Exception):
    """The deploy could not start; nothing was changed."""


class DeployFailed(Exception):
    """The deploy failed after changing something; ``result`` says what was done about it."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def topological_order(config_services):
    """Service names so that each comes after the services it depends on."""
    order, done, visiting = [], set(), set()

    def visit(name):
        if name in done:
            return
        if name in visiting:
            raise DeployError(f"services depend on each other in a cycle through {name!r}")
        visiting.add(name)
        for dep in sorted((config_services.get(name) or {}).get("depends_on") or {}):
            if dep in config_services:
                visit(dep)
        visiting.discard(name)
        done.add(name)
        order.append(name)

    for name in config_services:
        visit(name)
    return order


def rolling_conflicts(service, config):
    """What in a service's compose definition stops two copies running side by side."""
    found = []
    if config.get("container_name"):
        found.append(f"container_name: {config['container_name']}")
    for port in config.get("ports") or []:
        if isinstance(port, dict) and port.get("published"):
            found.append(f"ports: {port.get('published')}:{port.get('target')}")
    return found


def pinned_reference(image, inspect):
    """The digest reference (repo@sha256:...) of a pulled image, or its image id when it has none."""
    repo = _repository(image)
    for digest in inspect.get("RepoDigests") or []:
        if digest.split("@", 1)[0] == repo:
            return digest
    return inspect["Id"]


class Deployer:
    def __init__(self, docker, params, log=None, clock=time.monotonic, sleep=time.sleep):
        self.docker = docker
        self.p = params
        self.clock = clock
        self.sleep = sleep
        self.story = []
        self._log = log
        self.project_dir = os.path.abspath(params["project_dir"])
        self.project = params.get("project_name") or os.path.basename(self.project_dir.rstrip("/"))
        self.state_dir = os.path.join(self.project_dir, STATE_DIR)
        self.history = ReleaseHistory.load(os.path.join(self.state_dir, "history.json"), params.get("keep_releases", 5))
        self.services_opts = params.get("services") or {}
        for name, opts in self.services_opts.items():
            strategy = (opts or {}).get("strategy", "recreate")
            if strategy not in STRATEGIES:
                raise DeployError(f"services.{name}.strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
            if strategy == "rolling" and not (opts.get("nginx_upstream") and opts.get("port")):
                raise DeployError(
                    f"services.{name}: the rolling strategy needs nginx_upstream (the upstream name the nginx role "
                    "manages) and port (the container port nginx sends traffic to)"
                )
        self.health = {
            name: normalize_health(name, (opts or {}).get("health")) for name, opts in self.services_opts.items()
        }
        # Containers replaced by a rolling switch, stopping in the background: not checked any more.
        self.retired = set()
        # The env files of the release being brought up or checked (health header references).
        self._env_files = []

    # ----------------------------------------------------------------- helpers
    def say(self, line):
        self.story.append(line)
        if self._log:
            self._log(line)

    def _files(self):
        files = self.p.get("files") or []
        if not files:
            for candidate in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"):
                if os.path.exists(os.path.join(self.project_dir, candidate)):
                    files = [candidate]
                    break
        if not files:
            raise DeployError(f"no compose file in {self.project_dir}: put compose.yml there or set files")
        env_files = self.p.get("env_files")
        if env_files is None:
            env_files = [".env"] if os.path.exists(os.path.join(self.project_dir, ".env")) else []
        for name in [*files, *env_files]:
            if os.path.isabs(name) or ".." in name.split("/"):
                raise DeployError(f"{name!r}: compose and env files are named relative to project_dir, inside it")
            if not os.path.isfile(os.path.join(self.project_dir, name)):
                raise DeployError(f"{os.path.join(self.project_dir, name)} does not exist")
        return files, env_files

    def _read(self, names):
        out = {}
        for name in names:
            with open(os.path.join(self.project_dir, name), "rb") as handle:
                out[name] = handle.read()
        return out

    def _release_dir(self, release):
        return os.path.join(self.state_dir, "releases", release)

    def _compose(self, record=None, files=None, env_files=None):
        if record is not None:
            files, env_files = record["files"], record["env_files"]
        self._env_files = list(env_files or [])
        return Compose(
            self.docker,
            self.project_dir,
            self.project,
            [os.path.join(self.project_dir, f) for f in files],
            [os.path.join(self.project_dir, f) for f in env_files],
            self.p.get("profiles") or [],
        )

    def _write_override(self, path, images, config_services):
        """The override that pins images and frees rolling services from fixed names and ports.

        ``config_services`` is the project's own configuration (without this override).
        """
        lines = ["# Written by ec2ops.stack.compose_deploy.", "services:"]
        for name in sorted(config_services):
            opts = self.services_opts.get(name) or {}
            entries = []
            if images.get(name):
                entries.append(f"    image: {json.dumps(images[name])}")
            if opts.get("strategy") == "rolling":
                conflicts = rolling_conflicts(name, config_services[name])
                if any(c.startswith("container_name") for c in conflicts):
                    entries.append("    container_name: !reset null")
                if any(c.startswith("ports") for c in conflicts):
                    entries.append("    ports: !reset []")
            if entries:
                lines.append(f"  {name}:")
                lines.extend(entries)
        if len(lines) == 2:
            lines[1] = "services: {}"
        write_atomic(path, ("\n".join(lines) + "\n").encode(), 0o600)

    def _snapshot(self, release, contents):
        """Keep the release's files under .ec2ops/releases/<id>/ (0600)."""
        directory = self._release_dir(release)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for name, data in contents.items():
            dest = os.path.join(directory, "files", name)
            os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
            write_atomic(dest, data, 0o600)
        return directory

    def _restore_files(self, record):
        """Put a release's compose and env files back into project_dir (modes kept where the file exists)."""
        directory = os.path.join(self._release_dir(record["release"]), "files")
        for name in [*record["files"], *record["env_files"]]:
            with open(os.path.join(directory, name), "rb") as handle:
                data = handle.read()
            dest = os.path.join(self.project_dir, name)
            mode = os.stat(dest).st_mode & 0o7777 if os.path.exists(dest) else 0o600
            write_atomic(dest, data, mode)

    def _containers(self, service):
        return [
            c
            for c in self.docker.project_containers(self.project, service)
            if c.get("Config", {}).get("Labels", {}).get("com.docker.compose.oneoff") != "True"
        ]

    def _env_values(self):
        """Variables of the release's env files as they are on the host now (later files win)."""
        values = {}
        for name in self._env_files:
            try:
                with open(os.path.join(self.project_dir, name), encoding="utf-8") as handle:
                    values.update(parse_dotenv(handle.read(), strict=False))
            except (OSError, UnicodeDecodeError, DotenvError) as exc:
                raise HealthSpecError(f"cannot read the env file {name} for the health headers: {exc}") from None
        return values

    def _headers_for(self, spec):
        """``(headers, secrets)`` for an HTTP check, references resolved now, on the host."""
        if not spec.get("headers"):
            return None, []
        env = self._env_values() if header_references(spec["headers"]) else {}
        return resolve_headers(spec["headers"], env)

    def _check_for(self, service, container_id):
        spec = self.health.get(service) or normalize_health(service, None)

        def check():
            details = self.docker.inspect_containers([container_id])
            state = details[0].get("State") if details else None
            ok, detail, fatal = container_state_check(state)
            if spec["container"] and not ok:
                return ok, detail, fatal
            if fatal:
                return ok, detail, fatal
            if spec["url"]:
                ip = _container_ip(details[0])
                url = spec["url"].replace("{ip}", ip or "127.0.0.1")
                try:
                    headers, secrets = self._headers_for(spec)
                except HealthSpecError as exc:
                    # A missing variable will not appear by waiting: the verdict is final.
                    return False, str(exc), True
                ok, detail = http_check(
                    url, spec["status"], spec["body"], spec["timeout"], headers=headers, secrets=secrets
                )
                # An app that answers, but wrongly, `retries` times in a row has given its verdict:
                # no need to wait out the whole timeout (a refused connection may still be booting).
                answered = ok or " HTTP " in detail
                wrong_answers[0] = 0 if ok or not answered else wrong_answers[0] + 1
                return ok, detail, wrong_answers[0] >= spec["retries"]
            return True, detail, False

        wrong_answers = [0]
        return check, spec

    def _wait(self, service, containers, deadline):
        results = []
        for container in containers:
            check, spec = self._check_for(service, container["Id"])
            if spec["start_period"]:
                self.sleep(min(spec["start_period"], max(0.0, deadline - self.clock())))
            result = wait_healthy(check, spec, deadline, self.clock, self.sleep)
            result.container = container
            results.append(result)
            if not result.ok:
                return result, results
        return None, results

    def _switch_nginx(self, service, container):
        opts = self.services_opts[service]
        server = f"{_container_ip(container)}:{opts['port']}"
        argv = [
            self.p.get("nginx_switch_command") or "/usr/local/sbin/ec2ops-nginx-upstream",
            "--drain-timeout",
            str(int(opts.get("drain_timeout", 30))),
            opts["nginx_upstream"],
            server,
        ]
        rc, out, err = self.docker.run_raw(argv)
        if rc not in (0, 3):
            raise DockerError(f"switching nginx upstream {opts['nginx_upstream']} to {server}", argv, rc, err or out)
        if rc == 3:
            self.say(f"  {service}: nginx still has long requests on the old backend; it is stopped after its timeout")
        self.say(f"  {service}: nginx upstream {opts['nginx_upstream']} -> {server}")
        self._record_upstream(service, opts["nginx_upstream"], opts["port"], [container["Id"]])
        return server

    def _record_upstream(self, service, upstream, port, container_ids):
        """Remember which containers an upstream points at (``.ec2ops/upstreams.json``).

        ec2ops-upstream-sync reads it after a reboot or a container restart, when Docker may
        have given the same containers other addresses, and points nginx at them again.
        """
        path = os.path.join(self.state_dir, "upstreams.json")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict) or not isinstance(data.get("upstreams"), dict):
                raise ValueError(path)
        except (OSError, ValueError):
            data = {"format": 1, "upstreams": {}}
        data["upstreams"][upstream] = {"service": service, "port": int(port), "containers": list(container_ids)}
        write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), 0o600)

    # ------------------------------------------------------------ apply/verify
    def _apply_service(self, compose, service, overrides, deadline, timings):
        """Bring one service to the release in ``overrides``; raise _ServiceUnhealthy on failure."""
        opts = self.services_opts.get(service) or {}
        strategy = opts.get("strategy", "recreate")
        before = self._containers(service)
        before_ids = {c["Id"] for c in before}
        started = self.clock()
        if strategy == "rolling":
            running = [c for c in before if (c.get("State") or {}).get("Status") == "running"]
            try:
                compose.up([service], overrides, scale={service: len(running) + 1}, no_recreate=True)
            except DockerError as exc:
                stray = [c["Id"] for c in self._containers(service) if c["Id"] not in before_ids]
                self.docker.remove(stray)
                detail = f"compose could not start it: {exc}"
                raise _ServiceUnhealthy(service, detail, None, "", untouched=True) from None
            new = [c for c in self._containers(service) if c["Id"] not in before_ids]
            if not new:
                raise _ServiceUnhealthy(service, "compose started no new container", None, [])
            failure, _results = self._wait(service, new, deadline)
            if failure:
                # nginx never left the old container: keep the new one's logs, remove it, stop here.
                logs = self.docker.logs(new[0]["Id"], self.p.get("failure_log_lines", 10))
                self.docker.remove([c["Id"] for c in new])
                raise _ServiceUnhealthy(service, failure.detail, None, logs, untouched=True)
            self._switch_nginx(service, new[-1])
            old = [c["Id"] for c in before]
            self.retired.update(old)
            self.docker.stop_in_background(old, opts.get("stop_timeout", 10))
            timings[service] = round(self.clock() - started, 2)
            return {"strategy": strategy, "containers": [c["Id"][:12] for c in new], "retired": [i[:12] for i in old]}
        try:
            compose.up([service], overrides)
        except DockerError as exc:
            raise _ServiceUnhealthy(service, f"compose could not start it: {exc}", None, "") from None
        current = self._containers(service)
        failure, _results = self._wait(service, current, deadline)
        if failure:
            raise _ServiceUnhealthy(service, failure.detail, getattr(failure, "container", None), [])
        timings[service] = round(self.clock() - started, 2)
        return {"strategy": strategy, "containers": [c["Id"][:12] for c in current]}

    def _verify(self, services):
        seconds = float(self.p.get("verify_seconds", 30))
        if seconds <= 0 or not services:
            return None
        checks = []
        for service in services:
            for container in self._containers(service):
                if (container.get("State") or {}).get("Status") == "running" and container["Id"] not in self.retired:
                    check, spec = self._check_for(service, container["Id"])
                    checks.append((service, container, check, spec))
        start = self.clock()
        failures = {}
        interval = min([spec["interval"] for _s, _c, _k, spec in checks] or [1.0])
        while self.clock() - start < seconds:
            for service, container, check, spec in checks:
                ok, detail, fatal = check()
                key = container["Id"]
                failures[key] = 0 if ok else failures.get(key, 0) + 1
                if fatal or failures[key] >= spec["retries"]:
                    return _ServiceUnhealthy(
                        service, f"during the {seconds:.0f}s verify window: {detail}", container, []
                    )
            self.sleep(interval)
        return None

    # ------------------------------------------------------------------ deploy
    def deploy(self, check_mode=False):
        t0 = self.clock()
        files, env_files = self._files()
        contents = self._read([*files, *env_files])
        files_digest = content_digest(list(contents.items()))
        images = dict(self.p.get("images") or {})
        release = self.p.get("release") or default_release_id(images, files_digest)
        validate_release_id(release)
        current = self.history.current_record()
        result = {
            "release": release,
            "previous_release": current["release"] if current else None,
            "rolled_back": False,
            "services": {},
            "durations": {},
        }
        if current and current["release"] == release and current.get("files_digest") == files_digest:
            if current.get("requested_images") == images and self._all_running(current):
                result["changed"] = False
                result["previous_release"] = (self.history.previous_record() or {}).get("release")
                self.say(f"release {release} is already deployed and running; nothing to do")
                return result
        result["changed"] = True
        if check_mode:
            self.say(f"would deploy release {release} (current: {result['previous_release'] or 'none'})")
            result["diff"] = self._plan(current, release, images, files_digest)
            return result

        compose = self._compose(files=files, env_files=env_files)
        directory = self._snapshot(release, contents)
        override = os.path.join(directory, "images.yml")
        try:
            config = compose.config()
            services = config.get("services") or {}
            unknown = sorted(set(images) - set(services)) + sorted(set(self.services_opts) - set(services))
            if unknown:
                raise DeployError(
                    f"no such service in the compose files: {', '.join(unknown)} "
                    f"(services: {', '.join(sorted(services))})"
                )
            own_services = services
            self._write_override(override, images, own_services)
            config = compose.config([override])
            services = config.get("services") or {}
            order = topological_order(services)
            t_pull = self.clock()
            self._pull(compose, services, [override])
            pull_seconds = round(self.clock() - t_pull, 2)
            pinned = {}
            for name in order:
                inspect = self.docker.image_inspect(services[name]["image"]) if services[name].get("image") else None
                if inspect:
                    pinned[name] = {
                        "image": services[name]["image"],
                        "pinned": pinned_reference(services[name]["image"], inspect),
                        "image_id": inspect["Id"],
                    }
            self._write_override(override, {n: v["pinned"] for n, v in pinned.items()}, own_services)
        except (DeployError, DockerError) as exc:
            self._restore_after_refusal(current)
            shutil.rmtree(directory, ignore_errors=True)
            raise DeployError(
                f"{exc}. Nothing was changed: the running release is still {result['previous_release'] or 'none'}."
            ) from None

        record = {
            "release": release,
            "deployed_at": _now(),
            "deployed_by": self.p.get("deployed_by") or _user(),
            "files": files,
            "env_files": env_files,
            "files_digest": files_digest,
            "requested_images": images,
            "services": pinned,
            "secret_versions": self.p.get("secret_versions") or [],
            "snapshot": True,
        }
        deadline = self.clock() + float(self.p.get("wait_timeout", 120))
        timings = {}
        applied = []
        self.say(
            f"deploying release {release} (previous: {result['previous_release'] or 'none'}); "
            f"images pulled in {pull_seconds}s"
        )
        try:
            for name in order:
                info = self._apply_service(compose, name, [override], deadline, timings)
                applied.append(name)
                old = ((current or {}).get("services") or {}).get(name, {})
                info.update(
                    old_image=old.get("pinned"),
                    new_image=(pinned.get(name) or {}).get("pinned"),
                    health="healthy",
                    seconds_to_healthy=timings.get(name),
                )
                result["services"][name] = info
                self.say(f"  {name}: {info['strategy']}, healthy in {timings.get(name)}s")
            t_verify = self.clock()
            failure = self._verify(order)
            result["durations"]["verify"] = round(self.clock() - t_verify, 2)
            if failure:
                raise failure
        except (_ServiceUnhealthy, DockerError) as exc:
            failure = exc if isinstance(exc, _ServiceUnhealthy) else _ServiceUnhealthy("(compose)", str(exc), None, [])
            record["result"] = "failed"
            self.history.add(record, make_current=False)
            touched = list(applied)
            if failure.service in order and not failure.untouched:
                touched.append(failure.service)
            rolled = self._auto_rollback(current, touched, failure)
            result.update(rolled)
            result["durations"]["total"] = round(self.clock() - t0, 2)
            self.history.save()
            self._audit(
                "deploy", release, "rolled_back" if rolled["rolled_back"] else "failed", result["durations"]["total"]
            )
            raise DeployFailed(rolled["message"], result) from None

        record["result"] = "deployed"
        dropped = self.history.add(record)
        self.history.save()
        for old_release in dropped:
            shutil.rmtree(self._release_dir(old_release), ignore_errors=True)
        result["durations"].update(pull=pull_seconds, total=round(self.clock() - t0, 2))
        if self.p.get("prune_images", True):
            result["pruned_images"] = self._prune(services)
        self._audit("deploy", release, "deployed", result["durations"]["total"])
        self.say(f"release {release} deployed in {result['durations']['total']}s")
        return result

    def _pull(self, compose, services, overrides):
        policy = self.p.get("pull", "always")
        if policy == "never":
            return
        names = []
        for name, svc in services.items():
            if not svc.get("image") or svc.get("build"):
                continue
            if policy == "missing" and self.docker.image_inspect(svc["image"]):
                continue
            names.append(name)
        compose.pull(names, overrides)

    def _restore_after_refusal(self, current):
        if current and current.get("snapshot"):
            try:
                self._restore_files(current)
            except OSError:
                pass

    def _all_running(self, record):
        for name in record.get("services") or {}:
            containers = self._containers(name)
            if not any((c.get("State") or {}).get("Status") == "running" for c in containers):
                return False
        return True

    def _plan(self, current, release, images, files_digest):
        before = {n: s.get("image") for n, s in ((current or {}).get("services") or {}).items()}
        return {
            "before": {"release": (current or {}).get("release"), "images": before},
            "after": {
                "release": release,
                "images": images,
                "files_changed": (current or {}).get("files_digest") != files_digest,
            },
        }

    # ---------------------------------------------------------------- rollback
    def _auto_rollback(self, previous, touched, failure):
        container = failure.container
        logs = failure.logs or (
            self.docker.logs(container["Id"], self.p.get("failure_log_lines", 10)) if container else ""
        )
        what = f"{failure.service}: {failure.detail}"
        if not touched:
            message = (
                f"deploy failed: {what}. The new container never received traffic and was removed; "
                f"release {(previous or {}).get('release') or 'none'} kept serving throughout."
            )
            if logs:
                message += f"\nlast log lines of {failure.service}:\n{logs}"
            return {
                "rolled_back": True,
                "rolled_back_to": (previous or {}).get("release"),
                "message": message,
                "failure": what,
            }
        if previous is None or not previous.get("snapshot"):
            message = (
                f"deploy failed: {what}. There is no earlier release to roll back to, so the new containers were left "
                "as they are for inspection. Fix the release and deploy again."
            )
            if logs:
                message += f"\nlast log lines of {failure.service}:\n{logs}"
            return {"rolled_back": False, "message": message, "failure": what}
        self.say(f"health check failed ({what}); rolling back to {previous['release']}")
        try:
            restored = self._restore(previous, touched)
        except (_ServiceUnhealthy, DockerError, DeployError) as exc:
            return {
                "rolled_back": False,
                "failure": what,
                "message": f"deploy failed: {what}; the rollback to {previous['release']} ALSO failed: {exc}. "
                "Check the host now (docker compose ps, logs).",
            }
        self.history.current = previous["release"]
        message = (
            f"deploy failed: {what}. Rolled back to release {previous['release']}, which is serving and healthy. "
            "The failed release is kept in the history; fix it and deploy again."
        )
        if logs:
            message += f"\nlast log lines of {failure.service}:\n{logs}"
        return {
            "rolled_back": True,
            "rolled_back_to": previous["release"],
            "message": message,
            "failure": what,
            "restored": restored,
        }

    def _restore(self, record, services=None):
        """Bring ``services`` (default: all) back to ``record`` behind the health gate."""
        self._restore_files(record)
        compose = self._compose(record)
        override = os.path.join(self._release_dir(record["release"]), "images.yml")
        config = compose.config([override]).get("services") or {}
        order = [s for s in topological_order(config) if services is None or s in services]
        deadline = self.clock() + float(self.p.get("wait_timeout", 120))
        timings = {}
        for name in order:
            self._apply_service(compose, name, [override], deadline, timings)
        return {name: timings.get(name) for name in order}

    def rollback(self, target, check_mode=False):
        t0 = self.clock()
        record = self.history.resolve(target)
        current = self.history.current_record()
        result = {"release": record["release"], "previous_release": (current or {}).get("release"), "rolled_back": True}
        if current and current["release"] == record["release"] and self._all_running(record):
            result.update(changed=False, rolled_back=False)
            self.say(f"release {record['release']} is already the current release")
            return result
        result["changed"] = True
        if check_mode:
            self.say(f"would roll back from {result['previous_release']} to {record['release']}")
            return result
        self.say(f"rolling back from {result['previous_release']} to {record['release']}")
        try:
            timings = self._restore(record)
            failure = self._verify(list(timings))
            if failure:
                raise failure
        except (_ServiceUnhealthy, DockerError) as exc:
            self._audit("rollback", record["release"], "failed", round(self.clock() - t0, 2))
            raise DeployFailed(f"rollback to {record['release']} failed: {exc}", result) from None
        self.history.current = record["release"]
        record["last_restored_at"] = _now()
        self.history.save()
        result["services"] = {n: {"seconds_to_healthy": s} for n, s in timings.items()}
        result["durations"] = {"total": round(self.clock() - t0, 2)}
        self._audit("rollback", record["release"], "rolled_back_to", result["durations"]["total"])
        return result

    # ------------------------------------------------------------ bookkeeping
    def _audit(self, action, release, outcome, seconds):
        entry = {
            "at": _now(),
            "action": action,
            "release": release,
            "result": outcome,
            "seconds": seconds,
            "user": self.p.get("deployed_by") or _user(),
            "project": self.project,
        }
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, "audit.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)

    def _prune(self, services):
        """Remove this project's images that no kept release needs and no container uses."""
        keep = self.history.retained_images()
        repos = {_repository(s.get("image", "")) for s in services.values() if s.get("image")}
        for record in self.history.releases:
            repos.update(_repository(s.get("image", "")) for s in (record.get("services") or {}).values())
        in_use = {c.get("Image") for c in self.docker.project_containers(self.project)}
        removed = []
        for image in self.docker.images():
            repo = image.get("Repository")
            if repo not in repos:
                continue
            image_id = image.get("ID")
            digest = f"{repo}@{image.get('Digest')}" if image.get("Digest") not in (None, "", "<none>") else None
            if image_id in keep or image_id in in_use or digest in keep:
                continue
            if self.docker.remove_image(image_id):
                removed.append(f"{repo}:{image.get('Tag')}")
        return removed


class _ServiceUnhealthy(Exception):
    """A service failed its health gate. ``untouched``: the running release was never changed for it."""

    def __init__(self, service, detail, container, logs, untouched=False):
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail
        self.container = container
        self.logs = logs
        self.untouched = untouched


def _container_ip(container):
    networks = ((container or {}).get("NetworkSettings") or {}).get("Networks") or {}
    for _name, net in sorted(networks.items()):
        if net.get("IPAddress"):
            return net["IPAddress"]
    return None


def _repository(image):
    """``registry:5000/app:v1`` or ``app@sha256:..`` -> the repository, ``registry:5000/app``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    return ref


def _user():
    for var in ("SUDO_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    return str(os.getuid())
