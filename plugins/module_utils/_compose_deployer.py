# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health-checked Compose releases with automatic rollback (the engine of compose_deploy).

This is a private module_utils (leading underscore): no stable API.

Layout under ``<project_dir>/.ec2ops/`` (0700):

* ``history.json``           the release history: one record per attempt (see _release_history)
* ``releases/<key>/``        an attempt's compose and env files (0600) and ``images.yml``, the
                             override pinning each service's image; never changed once written
* ``upstreams.json``         which containers each switched nginx upstream points at
* ``audit.log``              one JSON line per deploy, rollback or repair: when, who, what, result
* ``deploy.lock``            the per-project lock (see _deploy_lock)

``Deployer.run`` takes the lock, loads the history under it, repairs what a killed run left
(an attempt still ``in_progress``: every service goes back to the current release behind the
health gate), then deploys or rolls back, and turns every error into DeployError (nothing was
changed) or DeployFailed (something was, and the result says what was done about it).

A deploy has two phases. *Prepare* changes nothing the app runs on: snapshot the files (read
from ``source_dir``, where the role staged them) into the attempt's own directory, check them
with ``docker compose config``, pull every image, pin each to the digest just pulled, and
journal the attempt as in progress. *Roll out*: install the files into ``project_dir``, then
per service in dependency order either ``recreate`` it or roll it (start as many new
containers as the service has replicas beside the old ones, wait for all to be healthy, switch
the nginx upstream to all of them at once, stop the old ones in the background), then watch
every service for ``verify_seconds``. A failure in the roll-out restores the previous release
(files, env, pinned images) behind the same health gate.
"""

import datetime
import json
import os
import pwd
import shlex
import shutil
import signal
import time

from ansible_collections.ec2ops.stack.plugins.module_utils._atomic_file import (
    UnsafePathError,
    private_directory,
    target_ownership,
    write_atomic,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Compose, DockerError
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deploy_spec import OptionsError, check_params
from ansible_collections.ec2ops.stack.plugins.module_utils._deploy_lock import DeployLock, LockHeld
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import DotenvError
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import parse as parse_dotenv
from ansible_collections.ec2ops.stack.plugins.module_utils._error_watch import ErrorWatch
from ansible_collections.ec2ops.stack.plugins.module_utils._health import (
    HealthSpecError,
    container_state_check,
    header_references,
    http_check,
    mask,
    mask_tree,
    maskable_values,
    normalize_health,
    resolve_headers,
    start_marker,
    wait_healthy,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._release_history import (
    GOOD,
    HistoryError,
    ReleaseHistory,
    content_digest,
    default_release_id,
    validate_release_id,
)

STATE_DIR = ".ec2ops"
# Lines of a release command's output kept in the audit log (masked).
RELEASE_OUTPUT_LINES = 200
# States that do not deploy: no repair, no hold check, no garbage collection.
OPERATOR_STATES = ("locked", "unlocked", "ran")
# Deploys held by an operator (state=locked): who, since when, why.
HOLD_FILE = "hold.json"
# TEST ONLY: the fault-injection suite names a point here and the process kills itself there.
FAULT_ENV = "EC2OPS_TEST_KILL_AT"


class DeployError(Exception):
    """The run could not start or was refused; nothing was changed. ``details`` go into the result."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


class DeployFailed(Exception):
    """The run failed after changing something; ``result`` says what was done about it."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def fault_point(name):
    """TEST ONLY: SIGKILL this process when EC2OPS_TEST_KILL_AT names ``name`` (see tests/functional)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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


def replicas_of(config):
    """How many containers a service runs (compose ``deploy.replicas`` or ``scale``; default 1)."""
    for value in ((config.get("deploy") or {}).get("replicas"), config.get("scale")):
        if value is not None:
            return int(value)
    return 1


def pinned_reference(image, inspect):
    """The digest reference (repo@sha256:...) of a pulled image, or its image id when it has none."""
    repo = _repository(image)
    for digest in inspect.get("RepoDigests") or []:
        if digest.split("@", 1)[0] == repo:
            return digest
    return inspect["Id"]


def _running(container):
    return (container.get("State") or {}).get("Status") == "running"


class Deployer:
    """One run of compose_deploy on one project. Build it with the options, call ``run``."""

    def __init__(self, docker, params, log=None, clock=time.monotonic, sleep=time.sleep):
        try:
            p = check_params(params)
            self.health = {name: normalize_health(name, opts["health"]) for name, opts in p["services"].items()}
        except (OptionsError, HealthSpecError) as exc:
            raise DeployError(str(exc)) from None
        self.docker, self.clock, self.sleep, self._log = docker, clock, sleep, log
        self.project_dir = os.path.abspath(p["project_dir"])
        self.source_dir = os.path.abspath(p["source_dir"] or self.project_dir)
        self.project = p["project_name"] or os.path.basename(self.project_dir.rstrip("/"))
        self.state_dir = os.path.join(self.project_dir, STATE_DIR)
        self.files_opt, self.env_files_opt, self.profiles = p["files"], p["env_files"], p["profiles"]
        # Files the release carries that compose does not read (key files): snapshotted and installed with it.
        self.assets = list(p["assets"])
        # Files given as text (the role's rendered templates): read from here instead of source_dir.
        self.contents = {name: text.encode() for name, text in p["contents"].items()}
        self.state, self.release_opt, self.images = p["state"], p["release"], dict(p["images"])
        self.services_opts = p["services"]
        self.wait_timeout, self.verify_seconds = p["wait_timeout"], p["verify_seconds"]
        self.keep, self.keep_failed, self.lock_timeout = p["keep_releases"], p["keep_failed"], p["lock_timeout"]
        self.pull_policy, self.prune_images = p["pull"], p["prune_images"]
        self.secret_versions, self.mask_values = p["secret_versions"], p["mask_values"]
        self.restart_policy, self.switch_command = p["restart_policy"], p["nginx_switch_command"]
        self.log_lines = p["failure_log_lines"]
        self.schema_rollback, self.rollback_env = p["schema_rollback"], p["rollback_env"]
        self.lock_message, self.run_service, self.run_command = p["lock_message"], p["run_service"], p["run_command"]
        self.run_timeout = p["run_timeout"]
        self.deployed_by = p["deployed_by"] or _user()
        self.history = None
        self.story = []
        # Containers replaced by a rolling switch, stopping in the background: not checked any more.
        self.retired = set()
        # The env files (paths) of the release being brought up or checked (health header references).
        self._env_paths = []
        self._secrets = set(self.mask_values)
        # Names the output is made of (project, services): env values equal to one (DB_HOST=postgres)
        # are not secrets, and masking them would garble every line.
        self._names = {self.project, *self.images, *self.services_opts}

    # ------------------------------------------------------------------- run
    def run(self, check_mode=False):
        """The whole run: lock, history, repair, deploy or rollback, errors masked and explained."""
        try:
            if check_mode:
                self.history = self._load_history()
                return self._finish(self._act(True))
            try:
                # Root's release state, in a project directory its owner may write: a directory of root alone.
                private_directory(self.state_dir, "the release state directory")
            except UnsafePathError as exc:
                raise DeployError(f"{exc} Nothing was changed.") from None
            lock = DeployLock(os.path.join(self.state_dir, "deploy.lock"), self.lock_timeout)
            try:
                lock.acquire(self._holder())
            except LockHeld as exc:
                raise DeployError(str(exc), holder=exc.holder) from None
            try:
                return self._finish(self._locked_run())
            finally:
                lock.release()
        except DeployError as exc:
            raise DeployError(self._mask(str(exc)), story=self._masked_story(), **exc.details) from None
        except DeployFailed as exc:
            raise DeployFailed(self._mask(str(exc)), self._finish(exc.result)) from None
        except (HistoryError, HealthSpecError, OptionsError, DockerError) as exc:
            raise DeployError(self._mask(str(exc)), story=self._masked_story()) from None
        except Exception as exc:  # noqa: BLE001 - a bug: reported plainly, the next run repairs the host
            raise DeployError(
                self._mask(f"{_describe(exc)}; an attempt that had started is repaired by the next run"),
                story=self._masked_story(),
            ) from None

    def _locked_run(self):
        self.history = self._load_history()
        if self.state in OPERATOR_STATES:
            return self._act(False)
        self._refuse_if_held()
        repaired = self._reconcile()
        try:
            result = self._act(False)
        finally:
            self._collect_garbage()
        if repaired:
            result["repaired"] = repaired
            result["changed"] = True
        return result

    def _act(self, check_mode):
        if self.state in ("locked", "unlocked"):
            return self._set_hold(check_mode)
        if self.state == "ran":
            return self.run_once(check_mode)
        self._refuse_if_held()
        if self.state == "rolled_back":
            return self.rollback(self.release_opt, check_mode)
        return self.deploy(check_mode)

    def _refuse_if_held(self):
        hold = read_hold(self.state_dir)
        if hold:
            raise DeployError(
                f"deploys of {self.project} are held by {hold.get('user', '?')} since {hold.get('since', '?')}: "
                f"{hold.get('message') or '(no message)'}. Nothing was changed. When it is over, release the hold "
                "(ansible-playbook app.yml -e do=unlock, or compose_deploy state=unlocked).",
                hold=hold,
            )

    # ------------------------------------------------------- hold and run
    def _set_hold(self, check_mode):
        """Hold deploys and rollbacks (an incident, a freeze) with a message, or release the hold."""
        path = os.path.join(self.state_dir, HOLD_FILE)
        hold = read_hold(self.state_dir)
        if self.state == "unlocked":
            if not hold:
                self.say(f"deploys of {self.project} are not held; nothing to do")
                return {"changed": False, "hold": None}
            if not check_mode:
                os.unlink(path)
                held = {"held_by": hold.get("user"), "message": hold.get("message")}
                self._audit("unlock", None, "released", 0, extra=held)
            self.say(f"released the hold of {hold.get('user', '?')} ({hold.get('message') or 'no message'})")
            return {"changed": True, "hold": None}
        wanted = {"user": self.deployed_by, "message": self.lock_message}
        if hold and {k: hold.get(k) for k in wanted} == wanted:
            self.say(f"deploys of {self.project} are already held by {hold['user']}: {hold['message'] or '-'}")
            return {"changed": False, "hold": hold}
        hold = dict(wanted, since=_now())
        if not check_mode:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            write_atomic(path, (json.dumps(hold, sort_keys=True) + "\n").encode(), 0o600)
            self._audit("lock", None, "held", 0, extra={"message": self.lock_message})
        self.say(f"deploys of {self.project} are held by {hold['user']}: {hold['message'] or '(no message)'}")
        return {"changed": True, "hold": hold}

    def run_once(self, check_mode):
        """A one-off command in the current release's image, files and env files (a console task, a fix-up)."""
        current = self.history.current_record()
        if not current:
            raise DeployError(f"{self.project} has no current release to run a command in: deploy one first")
        if self.run_service not in (current.get("services") or {}):
            known = ", ".join(sorted(current.get("services") or {})) or "none"
            raise DeployError(
                f"run_service {self.run_service!r} is not a service of release {current['key']} (services: {known})"
            )
        self._learn_record_secrets(current)
        # Its services are names of the output, not secrets (DB_HOST=postgres must not mask "postgres://").
        self._names.update(current.get("services") or {})
        shown = self._mask(" ".join(shlex.quote(a) for a in self.run_command))
        if check_mode:
            self.say(f"would run `{shown}` in {self.run_service} of release {current['key']}")
            return {"changed": True, "release": current["key"]}
        compose = self._compose(current["files"], current["env_files"], self._files_dir(current))
        entry, output = self._one_off(
            compose, current, self.run_service, self.run_command, self.run_timeout, "run", f"run-{os.getpid()}"
        )
        result = {"changed": True, "release": current["key"], "output": output, **entry}
        if entry["exit_code"] != 0:
            what = f"exited with code {entry['exit_code']}"
            if entry["timed_out"]:
                what = "ran past its timeout and was stopped"
            raise DeployFailed(f"`{shown}` in {self.run_service} {what}:\n{_tail(output, 50)}", result)
        return result

    def _holder(self):
        return {
            "user": self.deployed_by,
            "action": {"rolled_back": "rollback", "deployed": "deploy"}.get(self.state, self.state),
            "release": self.release_opt,
            "pid": os.getpid(),
            "started": _now(),
        }

    def _load_history(self):
        return ReleaseHistory.load(os.path.join(self.state_dir, "history.json"), self.keep, self.keep_failed)

    def _finish(self, result):
        result["story"] = self.story
        return mask_tree(result, self._secrets - self._names)

    def _masked_story(self):
        return [self._mask(line) for line in self.story]

    # --------------------------------------------------------------- helpers
    def say(self, line):
        self.story.append(line)
        if self._log:
            self._log(self._mask(line))

    def _mask(self, text):
        return mask(text, self._secrets - self._names)

    def _learn_secrets(self, paths):
        """Every value of these env files is masked in whatever this run reports."""
        for path in paths:
            try:
                self._learn_secret_text(_read(path))
            except OSError:
                continue

    def _learn_secret_text(self, data):
        """Every value of this env file's bytes is masked in whatever this run reports."""
        try:
            self._secrets.update(maskable_values(parse_dotenv(data.decode("utf-8"), strict=False).values()))
        except (UnicodeDecodeError, DotenvError):
            pass

    def _learn_record_secrets(self, record):
        """The values of a release's snapshotted env files are masked too."""
        self._learn_secrets(os.path.join(self._files_dir(record), n) for n in record["env_files"])

    def _files(self):
        """The release's compose and env file names (relative), each checked to exist in source_dir."""
        files = list(self.files_opt)
        if not files:
            names = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
            files = [n for n in names if os.path.exists(os.path.join(self.source_dir, n))][:1]
        if not files:
            raise DeployError(f"no compose file in {self.source_dir}: put compose.yml there or set files")
        env_files = self.env_files_opt
        if env_files is None:
            env_files = [".env"] if os.path.exists(os.path.join(self.source_dir, ".env")) else []
        for name in [*files, *env_files, *self.assets]:
            if os.path.isabs(name) or ".." in name.split("/") or name.split("/")[0] == STATE_DIR:
                raise DeployError(
                    f"{name!r}: compose and env files are named relative to project_dir, inside it (not in .ec2ops)"
                )
            if name not in self.contents and not os.path.isfile(os.path.join(self.source_dir, name)):
                raise DeployError(f"{os.path.join(self.source_dir, name)} does not exist")
        return files, list(env_files)

    def _source(self, name):
        """A release file's bytes: given as text in ``contents``, else read from source_dir."""
        if name in self.contents:
            return self.contents[name]
        return _read(os.path.join(self.source_dir, name))

    def _release_dir(self, key):
        return os.path.join(self.state_dir, "releases", key)

    def _files_dir(self, record):
        """Where a release's compose and env files are kept."""
        return os.path.join(self._release_dir(record["key"]), "files")

    def _compose(self, files, env_files, base=None):
        """Compose for the project; ``base`` is where the files are read (project_dir by default)."""
        base = base or self.project_dir
        self._env_paths = [os.path.join(base, f) for f in env_files]
        return Compose(
            self.docker,
            base,
            self.project,
            [os.path.join(base, f) for f in files],
            self._env_paths,
            self.profiles,
        )

    def _record_compose(self, record):
        return self._compose(record["files"], record["env_files"])

    def _override(self, record):
        return os.path.join(self._release_dir(record["key"]), "images.yml")

    def _write_override(self, path, images, config_services):
        """The override that pins images, sets a restart policy and frees rolling services.

        ``config_services`` is the project's own configuration (without this override).
        """
        lines = ["# Written by ec2ops.stack.compose_deploy.", "services:"]
        for name in sorted(config_services):
            opts = self.services_opts.get(name) or {}
            entries = []
            if images.get(name):
                entries.append(f"    image: {json.dumps(images[name])}")
            if self.restart_policy and not config_services[name].get("restart"):
                entries.append(f"    restart: {json.dumps(self.restart_policy)}")
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

    def _snapshot(self, directory, names):
        """Copy the release's files from source_dir to ``<directory>/files/`` (0600); returns their bytes."""
        contents = {}
        os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
        os.makedirs(directory, mode=0o700)
        for name in names:
            contents[name] = self._source(name)
            dest = os.path.join(directory, "files", name)
            os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
            write_atomic(dest, contents[name], 0o600)
        return contents

    def _install_files(self, record):
        """Put a record's compose and env files into project_dir (owner and mode kept where a file exists)."""
        directory = self._files_dir(record)
        for name in [*record["files"], *record["env_files"], *record.get("assets", [])]:
            with open(os.path.join(directory, name), "rb") as handle:
                data = handle.read()
            dest = os.path.join(self.project_dir, name)
            like = dest if os.path.exists(dest) else os.path.join(self.source_dir, name)
            current = os.stat(like) if os.path.exists(like) else None
            mode = current.st_mode & 0o7777 if current else 0o600
            if current is None and name in self.contents:
                # A file given as text, new in the project: the project directory's owner, readable by its
                # group if it is a compose file (env files stay 0600).
                current = os.stat(self.project_dir)
                mode = 0o600 if name in record["env_files"] else 0o640
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            write_atomic(dest, data, mode, *target_ownership(current, None, None))

    def _containers(self, service):
        return [
            c
            for c in self.docker.project_containers(self.project, service)
            if c.get("Config", {}).get("Labels", {}).get("com.docker.compose.oneoff") != "True"
        ]

    def _logs(self, container_id):
        return self._mask(self.docker.logs(container_id, self.log_lines)) if container_id else ""

    def _env_values(self):
        """Variables of the release's env files as they are on the host now (later files win)."""
        values = {}
        for path in self._env_paths:
            try:
                values.update(_read_env(path))
            except (OSError, UnicodeDecodeError, DotenvError) as exc:
                name = os.path.basename(path)
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
        wrong_answers = [0]
        seen = {"first": None, "last": None}

        def check():
            details = self.docker.inspect_containers([container_id])
            state = details[0].get("State") if details else None
            ok, detail, fatal = container_state_check(state)
            if (spec["container"] and not ok) or fatal:
                return ok, self._mask(detail), fatal
            marker = start_marker(details[0])
            seen["first"] = seen["first"] or marker
            restarts = marker[1] - seen["first"][1]
            if restarts > 0:
                # Docker restarted it (restart policy) between two checks: a crash loop, whatever it says now.
                return False, f"container restarted {restarts} time(s) while it was checked (crash loop)", True
            stable, seen["last"] = marker == seen["last"], marker
            if not spec["url"]:
                if not stable and (state.get("Health") or {}).get("Status") is None:
                    # No healthcheck: "running" counts once it was seen running, not restarted, twice in a row.
                    return False, "running; checking that it stays up", False
                return True, detail, False
            url = spec["url"].replace("{ip}", _container_ip(details[0]) or "127.0.0.1")
            try:
                headers, secrets = self._headers_for(spec)
            except HealthSpecError as exc:
                # A missing variable will not appear by waiting: the verdict is final.
                return False, str(exc), True
            ok, detail = http_check(
                url,
                spec["status"],
                spec["body"],
                spec["timeout"],
                headers=headers,
                secrets=[*secrets, *(self._secrets - self._names)],
            )
            # An app that answers, but wrongly, `retries` times in a row has given its verdict:
            # no need to wait out the whole timeout (a refused connection may still be booting).
            answered = ok or " HTTP " in detail
            wrong_answers[0] = 0 if ok or not answered else wrong_answers[0] + 1
            return ok, detail, wrong_answers[0] >= spec["retries"]

        return check, spec

    def _wait(self, service, containers, deadline):
        for container in containers:
            check, spec = self._check_for(service, container["Id"])
            if spec["start_period"]:
                self.sleep(min(spec["start_period"], max(0.0, deadline - self.clock())))
            result = wait_healthy(check, spec, deadline, self.clock, self.sleep)
            if not result.ok:
                result.container = container
                return result
        return None

    # --------------------------------------------------------------- nginx
    def _switch_nginx(self, service, containers):
        """Point the service's upstream at ``containers``; raise _SwitchFailed when nginx refused."""
        opts = self.services_opts[service]
        servers = [f"{_container_ip(c)}:{opts['port']}" for c in containers]
        if not containers or any(s.startswith("None:") for s in servers):
            raise _SwitchFailed(f"the new containers of {service} have no network address for nginx")
        argv = [self.switch_command, "--drain-timeout", str(opts["drain_timeout"]), opts["nginx_upstream"], *servers]
        try:
            rc, out, err = self.docker.run_raw(argv)
        except OSError as exc:
            raise _SwitchFailed(f"cannot run {self.switch_command}: {exc}") from None
        if rc not in (0, 3):
            said = " ".join((err or out or "").split())[-600:]
            raise _SwitchFailed(
                f"the nginx switch of upstream {opts['nginx_upstream']} to {', '.join(servers)} failed "
                f"(exit {rc}): {said or 'no output'}"
            )
        if rc == 3:
            self.say(f"  {service}: nginx still has long requests on the old backend; it is stopped after its timeout")
        self._record_upstream(service, opts["nginx_upstream"], opts["port"], [c["Id"] for c in containers])
        return servers, "nothing to do" not in (out or "")

    def _load_upstreams(self):
        path = os.path.join(self.state_dir, "upstreams.json")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if not isinstance(data, dict) or not isinstance(data.get("upstreams"), dict):
                raise ValueError(path)
            return data
        except (OSError, ValueError):
            return {"format": 1, "upstreams": {}}

    def _record_upstream(self, service, upstream, port, container_ids):
        """Remember which containers an upstream points at (``.ec2ops/upstreams.json``).

        ec2ops-upstream-sync reads it after a reboot or a container restart, when Docker may
        have given the same containers other addresses, and points nginx at them again.
        """
        data = self._load_upstreams()
        data["upstreams"][upstream] = {"service": service, "port": int(port), "containers": list(container_ids)}
        path = os.path.join(self.state_dir, "upstreams.json")
        write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), 0o600)

    def _serving(self, service):
        """The running containers nginx sends the service's traffic to (None: not a switched service)."""
        opts = self.services_opts.get(service) or {}
        entry = self._load_upstreams()["upstreams"].get(opts.get("nginx_upstream") or "")
        if opts.get("strategy") != "rolling" or not entry or entry.get("service") != service:
            return None
        ids = set(entry.get("containers") or [])
        return [c for c in self._containers(service) if _running(c) and c["Id"] in ids]

    # ---------------------------------------------------------- apply/verify
    def _apply_service(self, compose, service, overrides, deadline, replicas):
        """Bring one service to the release in ``overrides``; raise _ServiceUnhealthy on failure."""
        strategy = (self.services_opts.get(service) or {}).get("strategy", "recreate")
        started = self.clock()
        phases = {}
        if strategy == "rolling":
            info = self._roll(compose, service, overrides, deadline, replicas, phases)
        else:
            info = self._recreate(compose, service, overrides, deadline, phases)
        info.update(strategy=strategy, seconds_to_healthy=round(self.clock() - started, 2), phases=phases)
        return info

    def _phase(self, phases, name, since):
        """Record the seconds a phase of a service took (the deploy summary shows them); returns now."""
        now = self.clock()
        phases[name] = round(now - since, 2)
        return now

    def _recreate(self, compose, service, overrides, deadline, phases):
        t = self.clock()
        try:
            compose.up([service], overrides)
        except DockerError as exc:
            raise _ServiceUnhealthy(service, f"compose could not start it: {exc}", None, "") from None
        fault_point(f"after-up:{service}")
        t = self._phase(phases, "start", t)
        current = [c for c in self._containers(service) if c["Id"] not in self.retired]
        failure = self._wait(service, current, deadline)
        if failure:
            raise _ServiceUnhealthy(service, failure.detail, failure.container, "")
        self._phase(phases, "healthy", t)
        return {"containers": [c["Id"][:12] for c in current]}

    def _roll(self, compose, service, overrides, deadline, replicas, phases):
        """Start ``replicas`` new containers beside the old, all healthy, then switch nginx to all of them."""
        t = self.clock()
        before = self._containers(service)
        # A stopped container would be started again by compose and counted as a new one.
        self.docker.remove([c["Id"] for c in before if not _running(c)])
        old = [c for c in before if _running(c)]
        old_ids = {c["Id"] for c in before}
        try:
            compose.up([service], overrides, scale={service: len(old) + replicas}, no_recreate=True)
        except DockerError as exc:
            self.docker.remove([c["Id"] for c in self._containers(service) if c["Id"] not in old_ids])
            raise _ServiceUnhealthy(service, f"compose could not start it: {exc}", None, "", untouched=True) from None
        fault_point(f"after-up:{service}")
        t = self._phase(phases, "start", t)
        new = [c for c in self._containers(service) if c["Id"] not in old_ids]
        failure, logs = None, ""
        if len(new) != replicas:
            failure = f"compose started {len(new)} new containers, not {replicas}"
        unhealthy = None if failure else self._wait(service, new, deadline)
        if unhealthy:
            failure, logs = unhealthy.detail, self._logs(unhealthy.container["Id"])
        if not failure:
            t = self._phase(phases, "healthy", t)
            try:
                self._switch_nginx(service, new)
            except _SwitchFailed as exc:
                failure = f"{exc}; nginx still sends traffic to the old containers"
            self._phase(phases, "switch", t)
        if failure:
            # nginx never left the old containers: remove the new ones and stop here.
            self.docker.remove([c["Id"] for c in new])
            raise _ServiceUnhealthy(service, failure, None, logs, untouched=True)
        fault_point(f"after-switch:{service}")
        self.say(f"  {service}: nginx upstream {self.services_opts[service]['nginx_upstream']} -> {len(new)} new")
        self.retired.update(c["Id"] for c in old)
        self.docker.stop_in_background([c["Id"] for c in old], self.services_opts[service]["stop_timeout"])
        return {"containers": [c["Id"][:12] for c in new], "retired": [c["Id"][:12] for c in old]}

    def _verify(self, services):
        if self.verify_seconds <= 0 or not services:
            return None
        checks = []
        for service in services:
            for container in self._containers(service):
                if _running(container) and container["Id"] not in self.retired:
                    check, spec = self._check_for(service, container["Id"])
                    checks.append((service, container, check, spec))
        watches = self._error_watches(checks)
        start = self.clock()
        failures = {}
        interval = min([spec["interval"] for _s, _c, _k, spec in checks] or [1.0])
        while self.clock() - start < self.verify_seconds:
            for service, container, check, spec in checks:
                ok, detail, fatal = check()
                key = container["Id"]
                failures[key] = 0 if ok else failures.get(key, 0) + 1
                if fatal or failures[key] >= spec["retries"]:
                    detail = f"during the {self.verify_seconds}s verify window: {detail}"
                    return _ServiceUnhealthy(service, detail, container, "")
            failed = self._judge_errors(watches)
            if failed:
                return failed
            fault_point("verify")
            self.sleep(interval)
        failed = self._judge_errors(watches)
        for service, watch, _container in watches:
            self.say(f"  {service}: error watch: {watch.describe()}")
        return failed

    def _error_watches(self, checks):
        """An ErrorWatch per rolling service with ``error_watch``, on its serving containers' addresses."""
        watches = []
        for service in dict.fromkeys(s for s, _c, _k, _p in checks):
            opts = self.services_opts.get(service) or {}
            if not opts.get("error_watch"):
                continue
            containers = [c for s, c, _k, _p in checks if s == service]
            servers = [f"{_container_ip(c)}:{opts['port']}" for c in containers]
            w = opts["error_watch"]
            watch = ErrorWatch(w["access_log"], servers, w["max_percent"], w["min_requests"]).start()
            watches.append((service, watch, containers[0]))
        return watches

    def _judge_errors(self, watches):
        for service, watch, container in watches:
            ok, detail = watch.poll()
            if not ok:
                return _ServiceUnhealthy(
                    service, f"during the {self.verify_seconds}s verify window, {detail}", container, ""
                )
        return None

    def _drift(self, record):
        """Services that do not run exactly ``record``: its image, its replica count, and nothing else."""
        drifted = []
        for name, svc in sorted((record.get("services") or {}).items()):
            serving = self._serving(name)
            containers = serving if serving is not None else [c for c in self._containers(name) if _running(c)]
            wanted = svc.get("replicas")
            right_image = all(c.get("Image") == svc["image_id"] for c in containers) if svc.get("image_id") else True
            right_count = len(containers) == wanted if wanted else bool(containers)
            if not (containers and right_image and right_count):
                drifted.append(name)
        return drifted

    # ---------------------------------------------------------------- deploy
    def deploy(self, check_mode=False):
        t0 = self.clock()
        try:
            files, env_files = self._files()
        except DeployError:
            if not check_mode:
                raise
            self.say("the release's files are not in place yet (dry run before they are staged): it would be deployed")
            return {"changed": True, "release": self.release_opt, "rolled_back": False}
        names = [*files, *env_files, *self.assets]
        for name in env_files:
            if name in self.contents:
                self._learn_secret_text(self.contents[name])
            else:
                self._learn_secrets([os.path.join(self.source_dir, name)])
        current = self.history.current_record()
        if current:
            self._learn_record_secrets(current)
        digest = content_digest([(n, self._source(n)) for n in names])
        release = self.release_opt or default_release_id(self.images, digest)
        validate_release_id(release)
        result = {"release": release, "previous_release": (current or {}).get("release"), "rolled_back": False}
        result.update(services={}, durations={}, changed=True)
        same = current and current["release"] == release and current.get("files_digest") == digest
        if same and current.get("requested_images") == self.images and not self.history.pending():
            if not self._drift(current):
                return self._already_deployed(current, result, check_mode)
        if check_mode:
            self.say(f"would deploy release {release} (current: {result['previous_release'] or 'none'})")
            result["diff"] = self._plan(current, release, digest, files)
            return result
        secrets_only = self._secrets_only(current, release, files, env_files)
        attempt = self._prepare(release, files, env_files, digest, current)
        if secrets_only:
            attempt["secrets_only"] = True
            result["secrets_only"] = True
            self.say(f"secrets-only release: the images and compose files of {release} are the same, .env changed")
        self._release_phase(attempt, current, result, t0)
        return self._roll_out(attempt, current, result, t0)

    def _secrets_only(self, current, release, files, env_files):
        """Whether this attempt changes only the env files of the running release (a secret rotation)."""
        if not current or current["release"] != release or current.get("requested_images") != self.images:
            return False
        if current.get("files") != files or current.get("env_files") != env_files:
            return False
        if current.get("assets", []) != self.assets:
            return False
        kept = self._files_dir(current)
        try:
            same_compose = all(self._source(n) == _read(os.path.join(kept, n)) for n in files)
            same_env = all(self._source(n) == _read(os.path.join(kept, n)) for n in [*env_files, *self.assets])
        except OSError:
            return False
        return same_compose and not same_env

    def _already_deployed(self, current, result, check_mode):
        """Nothing to deploy; nginx is re-pointed at the serving containers if their addresses moved."""
        result["changed"] = False
        result["previous_release"] = (self.history.previous_record() or {}).get("release")
        self.say(f"release {current['release']} is already deployed and running; nothing to do")
        if check_mode:
            return result
        for name in sorted(current.get("services") or {}):
            serving = self._serving(name)
            if not serving:
                continue
            try:
                servers, moved = self._switch_nginx(name, serving)
            except _SwitchFailed as exc:
                raise DeployError(f"release {current['key']} runs, but re-pointing nginx at it failed: {exc}") from None
            if moved:
                result["changed"] = True
                self.say(f"  {name}: nginx upstream re-pointed at {', '.join(servers)} (addresses had moved)")
        return result

    def _prepare(self, release, files, env_files, digest, current):
        """Snapshot, check, pull, pin and journal an attempt: nothing the app runs on changes here."""
        record = {
            "release": release,
            "started_at": _now(),
            "deployed_by": self.deployed_by,
            "files": files,
            "env_files": env_files,
            "assets": list(self.assets),
            "files_digest": digest,
            "requested_images": dict(self.images),
            "secret_versions": self.secret_versions,
            "snapshot": True,
        }
        t0 = self.clock()
        key = self.history.begin(record, taken=lambda k: os.path.lexists(self._release_dir(k)))
        directory = self._release_dir(key)
        try:
            self._snapshot(directory, [*files, *env_files, *self.assets])
            fault_point("after-snapshot")
            record.update(self._resolve_images(record))
            record["prepare_seconds"] = round(self.clock() - t0, 2)
            # The journal: from here on a killed run is found and repaired by the next one.
            self.history.save()
        except Exception as exc:  # noqa: BLE001 - any failure here refuses the attempt, changing nothing
            self.history.forget(key)
            shutil.rmtree(directory, ignore_errors=True)
            if self.source_dir == self.project_dir:
                # The caller edited the live files before the run: they go back to the running release's.
                self._restore_files_quietly(current)
            running = (current or {}).get("release") or "none"
            raise DeployError(
                f"{_describe(exc)}. Nothing was changed: the running release is still {running}."
            ) from None
        return record

    def _resolve_images(self, record):
        """Check the attempt's files with compose, pull, and pin every image: ``{order, services, pull}``."""
        compose = self._compose(record["files"], record["env_files"], self._files_dir(record))
        own = compose.config().get("services") or {}
        self._names.update(own)
        unknown = sorted(set(self.images) - set(own)) + sorted(set(self.services_opts) - set(own))
        if unknown:
            raise DeployError(
                f"no such service in the compose files: {', '.join(unknown)} (services: {', '.join(sorted(own))})"
            )
        override = self._override(record)
        self._write_override(override, self.images, own)
        services = compose.config([override]).get("services") or {}
        order = topological_order(services)
        t_pull = self.clock()
        self._pull(compose, services, [override])
        pull_seconds = round(self.clock() - t_pull, 2)
        fault_point("after-pull")
        pinned = {}
        for name in order:
            inspect = self.docker.image_inspect(services[name]["image"]) if services[name].get("image") else None
            pinned[name] = {"replicas": replicas_of(services[name])}
            if inspect:
                ref = pinned_reference(services[name]["image"], inspect)
                pinned[name].update(image=services[name]["image"], pinned=ref, image_id=inspect["Id"])
        self._write_override(override, {n: v["pinned"] for n, v in pinned.items() if v.get("pinned")}, own)
        return {"order": order, "services": pinned, "pull_seconds": pull_seconds}

    # --------------------------------------------------------- release phase
    def _release_phase(self, record, current, result, t0):
        """Each service's ``release_command`` (a schema migration), before anything the app runs on changes.

        A one-off container of the service, from the attempt's pinned image and snapshotted files and env
        files, on the project's network. A command that fails or outlives ``release_timeout`` ends the
        attempt: the running release is not touched, and the attempt is kept as failed.
        """
        steps = [n for n in record["order"] if (self.services_opts.get(n) or {}).get("release_command")]
        if not steps:
            return
        compose = self._compose(record["files"], record["env_files"], self._files_dir(record))
        record["release_commands"] = []
        for service in steps:
            entry, output = self._run_release_command(compose, record, service)
            record["release_commands"].append(entry)
            self.history.save()
            if entry["exit_code"] == 0:
                continue
            what = (
                f"the release command of {service} (`{entry['command']}`) "
                + (f"ran past its {entry['timeout']}s timeout and was stopped" if entry["timed_out"] else
                   f"exited with code {entry['exit_code']}")
            )  # fmt: skip
            record.update(ended_at=_now(), failure=what)
            self.history.finish(record["key"], "failed")
            self.history.save()
            result.update(attempt=record["attempt"], release_commands=record["release_commands"])
            result["durations"]["total"] = round(self.clock() - t0, 2)
            self._audit("deploy", record["key"], "failed", result["durations"]["total"], what)
            running = (current or {}).get("release") or "none"
            tail = f"\nlast output lines:\n{_tail(output, self.log_lines)}" if output and self.log_lines else ""
            raise DeployFailed(
                f"deploy failed: {what}. Nothing the app runs on was changed: release {running} kept serving "
                f"(if the command changed the database part way, fix that before the next deploy).{tail}",
                result,
            )

    def _run_release_command(self, compose, record, service):
        """Run one release command to its end or its timeout: ``(history entry, masked output)``."""
        opts = self.services_opts[service]
        return self._one_off(
            compose, record, service, opts["release_command"], opts["release_timeout"], "release_command", "release"
        )

    def _one_off(self, compose, record, service, command, timeout, action, kind):
        """A one-off container of ``service`` from ``record``'s pinned image and files, run to its end or
        ``timeout``, then removed; audited with its masked output: ``(entry, masked output)``."""
        name = f"{self.project}-{kind}-{record['key'].replace('+', '-')}-{service}"
        shown = self._mask(" ".join(shlex.quote(a) for a in command))
        self.say(f"  {service}: {action.replace('_', ' ')} `{shown}` (timeout {timeout}s)")
        self.docker.remove([name])  # a run killed during its command left it behind
        t0 = self.clock()
        state, output = {}, ""
        try:
            compose.run_detached(service, command, name, [self._override(record)])
            while True:
                found = self.docker.inspect_containers([name])
                state = (found[0].get("State") or {}) if found else {"Status": "gone"}
                if state.get("Status") in ("exited", "dead", "gone") or self.clock() - t0 >= timeout:
                    break
                fault_point(action)
                self.sleep(0.5)
            output = self._mask(self.docker.logs(name, RELEASE_OUTPUT_LINES))
        except DockerError as exc:
            state, output = {"Status": "not started"}, self._mask(str(exc))
        finally:
            self.docker.remove([name])
        timed_out = state.get("Status") not in ("exited", "dead", "gone", "not started")
        code = state.get("ExitCode", -1) if state.get("Status") in ("exited", "dead") else -1
        entry = {
            "service": service,
            "command": shown,
            "exit_code": code,
            "timed_out": timed_out,
            "timeout": timeout,
            "seconds": round(self.clock() - t0, 2),
            "at": _now(),
        }
        self._audit(
            action,
            record["key"],
            "ok" if code == 0 else "failed",
            entry["seconds"],
            extra={"service": service, "command": shown, "exit_code": code, "output": output},
        )
        self.say(f"  {service}: {action.replace('_', ' ')} {'ran' if code == 0 else 'FAILED'} in {entry['seconds']}s")
        return entry, output

    def _roll_out(self, record, current, result, t0):
        deadline = self.clock() + self.wait_timeout
        applied, applying = [], None
        self.say(
            f"deploying release {record['key']} (previous: {result['previous_release'] or 'none'}); "
            f"images pulled in {record['pull_seconds']}s"
        )
        try:
            self._install_files(record)
            compose = self._record_compose(record)
            for name in record["order"]:
                applying = name
                replicas = record["services"][name]["replicas"]
                info = self._apply_service(compose, name, [self._override(record)], deadline, replicas)
                applied.append(name)
                result["services"][name] = self._service_result(info, current, record, name)
                said = ", ".join(f"{phase} {seconds}s" for phase, seconds in info["phases"].items())
                self.say(f"  {name}: {info['strategy']}, healthy in {info['seconds_to_healthy']}s ({said})")
            applying = None
            t_verify = self.clock()
            failure = self._verify(record["order"])
            result["durations"]["verify"] = round(self.clock() - t_verify, 2)
        except _ServiceUnhealthy as exc:
            failure = exc
        except DockerError as exc:
            failure = _ServiceUnhealthy(applying or "(compose)", str(exc), None, "")
        except Exception as exc:  # noqa: BLE001 - an OSError or a bug: still end on a complete release
            failure = _ServiceUnhealthy(applying or "(deployer)", _describe(exc), None, "")
        if failure:
            touched = applied + ([failure.service] if failure.service in record["order"] else [])
            touched = [s for s in touched if not (s == failure.service and failure.untouched)]
            return self._fail(record, current, touched, failure, result, t0)
        return self._succeed(record, result, t0)

    def _service_result(self, info, current, record, name):
        old = ((current or {}).get("services") or {}).get(name, {})
        info.update(old_image=old.get("pinned"), new_image=record["services"][name].get("pinned"), health="healthy")
        return info

    def _succeed(self, record, result, t0):
        record["ended_at"] = _now()
        self.history.finish(record["key"], GOOD, make_current=True)
        self.history.save()
        self._collect_garbage()
        result["durations"].update(
            prepare=record["prepare_seconds"], pull=record["pull_seconds"], total=round(self.clock() - t0, 2)
        )
        result["attempt"] = record["attempt"]
        if self.prune_images:
            result["pruned_images"] = self._prune()
        self._audit("deploy", record["key"], "deployed", result["durations"]["total"])
        d = result["durations"]
        self.say(
            f"release {record['key']} deployed in {d['total']}s (prepare {d['prepare']}s of which pull {d['pull']}s,"
            f" verify {d.get('verify', 0)}s)"
        )
        return result

    def _fail(self, record, current, touched, failure, result, t0):
        what = self._mask(f"{failure.service}: {failure.detail}")
        record.update(ended_at=_now(), failure=what)
        self.history.finish(record["key"], "failed")
        rolled = self._auto_rollback(current, touched, failure, what)
        if record.get("release_commands") and rolled["rolled_back"] and current:
            warning = (
                f"this attempt's release command(s) ran before it failed, so the database schema may be ahead of "
                f"release {current['key']}, which serves again: make sure it works with it"
            )
            rolled["message"] += f" Warning: {warning}."
            result["warnings"] = [warning]
        result.update(rolled, attempt=record["attempt"])
        result["durations"]["total"] = round(self.clock() - t0, 2)
        self.history.save()
        outcome = "rolled_back" if rolled["rolled_back"] else "failed"
        self._audit("deploy", record["key"], outcome, result["durations"]["total"], what)
        raise DeployFailed(rolled["message"], result)

    def _pull(self, compose, services, overrides):
        if self.pull_policy == "never":
            return
        names = []
        for name, svc in services.items():
            if not svc.get("image") or svc.get("build"):
                continue
            if self.pull_policy == "missing" and self.docker.image_inspect(svc["image"]):
                continue
            names.append(name)
        compose.pull(names, overrides)

    def _plan(self, current, release, files_digest, files):
        """The dry run's diff: release, images and the compose files' text (env files are not shown)."""
        before = {n: s.get("image") for n, s in ((current or {}).get("services") or {}).items()}
        plan = {"release": release, "images": self.images}
        plan["files_changed"] = (current or {}).get("files_digest") != files_digest
        pending = [r["key"] for r in self.history.pending()]
        if pending:
            plan["repairs_interrupted"] = pending
        was = {"release": (current or {}).get("release"), "images": before}
        if plan["files_changed"]:
            plan["files"] = {n: self._source(n).decode("utf-8", "replace") for n in files}
            kept = self._files_dir(current) if current else None
            was["files"] = {
                n: _read(os.path.join(kept, n)).decode("utf-8", "replace")
                for n in (current or {}).get("files", [])
                if os.path.isfile(os.path.join(kept, n))
            }
        return {"before": was, "after": plan}

    # -------------------------------------------------------------- rollback
    def _auto_rollback(self, previous, touched, failure, what):
        logs = failure.logs or self._logs((failure.container or {}).get("Id"))
        tail = f"\nlast log lines of {failure.service}:\n{logs}" if logs else ""
        if not touched:
            self._restore_files_quietly(previous)
            message = (
                f"deploy failed: {what}. The new container never received traffic and was removed; "
                f"release {(previous or {}).get('release') or 'none'} kept serving throughout."
            )
            return {"rolled_back": True, "rolled_back_to": (previous or {}).get("key"), "message": message + tail}
        if previous is None:
            message = (
                f"deploy failed: {what}. There is no earlier release to roll back to, so the new containers were left "
                "as they are for inspection. Fix the release and deploy again."
            )
            return {"rolled_back": False, "message": message + tail, "failure": what}
        self.say(f"health check failed ({what}); rolling back to {previous['key']}")
        try:
            restored = self._restore(previous, touched)
        except Exception as exc:  # noqa: BLE001 - whatever broke the rollback is reported, not raised
            return {
                "rolled_back": False,
                "failure": what,
                "message": f"deploy failed: {what}; the rollback to {previous['key']} ALSO failed: {_describe(exc)}. "
                "Check the host now (docker compose ps, logs); the next run of the deploy repairs it.",
            }
        self.history.current = previous["key"]
        message = (
            f"deploy failed: {what}. Rolled back to release {previous['key']}, which is serving and healthy. "
            "The failed release is kept in the history; fix it and deploy again."
        )
        return {"rolled_back": True, "rolled_back_to": previous["key"], "message": message + tail, "restored": restored}

    def _restore_files_quietly(self, record):
        if record:
            try:
                self._install_files(record)
            except OSError:
                pass

    def _restore(self, record, services=None):
        """Bring ``services`` (default: all) back to ``record`` behind the health gate."""
        self._install_files(record)
        self._learn_record_secrets(record)
        compose = self._record_compose(record)
        override = self._override(record)
        config = compose.config([override]).get("services") or {}
        order = [s for s in topological_order(config) if services is None or s in services]
        deadline = self.clock() + self.wait_timeout
        timings = {}
        for name in order:
            info = self._apply_service(compose, name, [override], deadline, replicas_of(config[name]))
            timings[name] = info["seconds_to_healthy"]
        return timings

    def rollback(self, target, check_mode=False):
        t0 = self.clock()
        record = self.history.resolve(target)
        current = self.history.current_record()
        result = {"release": record["key"], "previous_release": (current or {}).get("key"), "rolled_back": True}
        if current and current["key"] == record["key"] and not self._drift(record):
            result.update(changed=False, rolled_back=False)
            self.say(f"release {record['key']} is already the current release")
            return result
        result["changed"] = True
        crossed = self._schema_steps_after(record)
        if crossed:
            warning = (
                f"rolling back to {record['key']} crosses the release command(s) of {crossed}: the database schema "
                f"may be ahead of {record['key']}. Make sure {record['key']} works with it, or roll the schema back "
                "first (your migration tool's down step)"
            )
            if self.schema_rollback == "refuse":
                raise DeployError(
                    f"{warning}; then run the rollback again with schema_rollback=warn "
                    "(compose_app_schema_rollback: warn). Nothing was changed."
                )
            self.say(f"warning: {warning}")
            result["warnings"] = [warning]
        if self.rollback_env == "current" and current and current["key"] != record["key"]:
            return dict(
                self._rollback_with_current_env(record, current, check_mode),
                **{k: v for k, v in result.items() if k == "warnings"},
            )
        if check_mode:
            self.say(f"would roll back from {result['previous_release']} to {record['key']}")
            return result
        self.say(f"rolling back from {result['previous_release']} to {record['key']}")
        try:
            timings = self._restore(record)
            failure = self._verify(list(timings))
            if failure:
                raise failure
        except Exception as exc:  # noqa: BLE001 - whatever broke the rollback is reported, and the serving release brought back
            return self._rollback_failed(record, current, exc, result, t0)
        self.history.current = record["key"]
        record["last_restored_at"] = _now()
        self.history.save()
        result["services"] = {n: {"seconds_to_healthy": s} for n, s in timings.items()}
        result["durations"] = {"total": round(self.clock() - t0, 2)}
        self._audit("rollback", record["key"], "rolled_back_to", result["durations"]["total"])
        return result

    def _rollback_with_current_env(self, record, current, check_mode):
        """``rollback_env=current``: ``record``'s images and compose files with today's env files, deployed as a
        new attempt of its release through the whole gate (after a rotation revoked the old credentials)."""
        kept, now = self._files_dir(record), self._files_dir(current)
        self.contents = {n: _read(os.path.join(kept, n)) for n in record["files"]}
        self.contents.update({n: _read(os.path.join(now, n)) for n in current["env_files"]})
        self.contents.update({n: _read(os.path.join(now, n)) for n in current.get("assets", [])})
        self.assets = list(current.get("assets", []))
        self.files_opt, self.env_files_opt = list(record["files"]), list(current["env_files"])
        # The exact images it ran: pinned by digest (or local image id), already on the host or pullable.
        self.images = {n: svc["pinned"] for n, svc in (record.get("services") or {}).items() if svc.get("pinned")}
        self.pull_policy = "missing" if self.pull_policy == "always" else self.pull_policy
        self.release_opt = record["release"]
        self.say(
            f"rolling back to the images and compose files of {record['key']} with the env files of "
            f"{current['key']} (rollback_env=current)"
        )
        result = self.deploy(check_mode)
        result.update(rolled_back=True, rollback_env="current")
        return result

    def _schema_steps_after(self, record):
        """``release (service: command), ...`` of every attempt after ``record`` whose release command ran."""
        releases = self.history.releases
        later = releases[releases.index(record) + 1 :]
        steps = [
            f"{r['key']} ({step['service']}: {step['command']})"
            for r in later
            for step in r.get("release_commands") or []
        ]
        return ", ".join(steps)

    def _rollback_failed(self, record, current, exc, result, t0):
        what = self._mask(_describe(exc))
        back = ""
        if current:
            try:
                self._restore(current, self._drift(current))
                back = f" Release {current['key']}, which was serving before, is serving again."
            except Exception as again:  # noqa: BLE001 - reported in the failure message
                back = (
                    f" Bringing back {current['key']} failed too ({_describe(again)}); the next run repairs the host."
                )
        self._audit("rollback", record["key"], "failed", round(self.clock() - t0, 2), what)
        raise DeployFailed(f"rollback to {record['key']} failed: {what}.{back}", result)

    # ----------------------------------------------------------- repair
    def _reconcile(self):
        """Find attempts a killed run left in progress and bring the host back to the current release."""
        pending = self.history.pending()
        if not pending:
            return None
        for record in pending:
            record.update(result="interrupted", ended_at=_now())
        self.history.save()
        names = "; ".join(f"{r['key']} (started {r.get('started_at')} by {r.get('deployed_by')})" for r in pending)
        current = self.history.current_record()
        repaired = {"interrupted": [r["key"] for r in pending], "restored": None}
        if current is None:
            self.say(f"found an interrupted deploy of {names}; there is no earlier release to go back to")
            self._audit("repair", pending[-1]["key"], "interrupted", 0)
            return repaired
        t0 = self.clock()
        drift = self._drift(current)
        try:
            self._restore(current, drift)
            self._remove_strays(current)
        except Exception as exc:  # noqa: BLE001 - reported with what to do
            self._audit("repair", current["key"], "failed", round(self.clock() - t0, 2))
            raise DeployFailed(
                f"found an interrupted deploy of {names}, and bringing back release {current['key']} failed: "
                f"{_describe(exc)}. Check the host (docker compose ps, logs) and run the deploy again.",
                {"repaired": repaired, "changed": True},
            ) from None
        self.say(
            f"found an interrupted deploy of {names}: rolled back to release {current['key']} "
            f"({'services restored: ' + ', '.join(drift) if drift else 'no service had changed'})"
        )
        self._audit("repair", current["key"], "rolled_back_to", round(self.clock() - t0, 2))
        repaired["restored"] = current["key"]
        return repaired

    def _remove_strays(self, record):
        """Containers of a switched service that nginx does not point at (a killed run's new ones)."""
        for name in record.get("services") or {}:
            serving = self._serving(name)
            if serving:
                keep = {c["Id"] for c in serving} | self.retired
                self.docker.remove([c["Id"] for c in self._containers(name) if c["Id"] not in keep])

    # ---------------------------------------------------------- bookkeeping
    def _audit(self, action, release, outcome, seconds, failure=None, extra=None):
        entry = {
            **(extra or {}),
            "at": _now(),
            "action": action,
            "release": release,
            "result": outcome,
            "seconds": seconds,
            "user": self.deployed_by,
            "project": self.project,
        }
        if failure:
            entry["failure"] = self._mask(failure)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        fd = os.open(os.path.join(self.state_dir, "audit.log"), flags, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)

    def _collect_garbage(self):
        """Drop records past retention and every snapshot directory no record names (any path, any run)."""
        dropped = self.history.prune()
        if dropped:
            self.history.save()
        releases = os.path.join(self.state_dir, "releases")
        keys = self.history.keys()
        try:
            names = os.listdir(releases)
        except OSError:
            return
        for name in names:
            if name not in keys:
                shutil.rmtree(os.path.join(releases, name), ignore_errors=True)

    def _prune(self):
        """Remove this project's images that no kept good release needs and no container uses."""
        keep = self.history.retained_images()
        repos = set()
        for record in self.history.releases:
            repos.update(_repository(s.get("image", "")) for s in (record.get("services") or {}).values())
        repos.discard("")
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


class _SwitchFailed(Exception):
    """nginx refused the upstream switch; nothing changed in nginx."""


def _describe(exc):
    """An exception as one line for a message: its own text, or its type for the unexpected ones."""
    if isinstance(exc, (DeployError, DockerError, _ServiceUnhealthy, _SwitchFailed, HistoryError, HealthSpecError)):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else f"{exc.strerror or exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


def read_hold(state_dir):
    """The operator's hold on deploys (``{user, message, since}``), or None."""
    try:
        with open(os.path.join(state_dir, HOLD_FILE), encoding="utf-8") as handle:
            hold = json.loads(handle.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"user": "?", "message": f"{HOLD_FILE} is unreadable: remove it to release the hold"}
    return hold if isinstance(hold, dict) else {"user": "?", "message": f"{HOLD_FILE} is not a hold"}


def _tail(text, lines):
    return "\n".join(text.splitlines()[-lines:])


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _read_env(path):
    """The variables of an env file (lenient: as Compose reads it)."""
    with open(path, encoding="utf-8") as handle:
        return parse_dotenv(handle.read(), strict=False)


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
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
