# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of compose_deploy, in one place: the module, the engine and the benchmark use these.

This is a private module_utils (leading underscore): no stable API.

``ARGUMENT_SPEC`` is the module's argument spec. ``services`` is a mapping of service name to
options, which an argument spec cannot describe, so each entry is checked against
``SERVICE_SPEC`` (with ``HEALTH_SPEC`` as its ``health`` suboptions) by ``check_services``:
types, choices and ranges, with the option named in the error, before anything starts.
"""

import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

DEFAULT_SWITCH_COMMAND = "/usr/local/sbin/ec2ops-nginx-upstream"

HEALTH_SPEC = dict(
    container=dict(type="bool", default=True),
    url=dict(type="str"),
    status=dict(type="int", default=200),
    body=dict(type="str"),
    interval=dict(type="float", default=1.0),
    timeout=dict(type="float", default=2.0),
    retries=dict(type="int", default=3),
    start_period=dict(type="float", default=0.0),
    healthy_threshold=dict(type="int", default=1),
    headers=dict(type="dict"),
)

ERROR_WATCH_SPEC = dict(
    access_log=dict(type="path", required=True),
    max_percent=dict(type="float", default=2.0),
    min_requests=dict(type="int", default=50),
)

SERVICE_SPEC = dict(
    strategy=dict(type="str", choices=["recreate", "rolling"], default="recreate"),
    nginx_upstream=dict(type="str"),
    port=dict(type="int"),
    drain_timeout=dict(type="int", default=30),
    stop_timeout=dict(type="int", default=10),
    health=dict(type="dict", options=HEALTH_SPEC, default={}),
    error_watch=dict(type="dict", options=ERROR_WATCH_SPEC),
    release_command=dict(type="list", elements="str"),
    release_timeout=dict(type="int", default=600),
)

# Lower bounds an argument spec cannot say: option -> smallest value.
_SERVICE_MINIMA = {"port": 1, "drain_timeout": 0, "stop_timeout": 0, "release_timeout": 1}
_HEALTH_MINIMA = {
    "status": 100,
    "interval": 0.05,
    "timeout": 0.1,
    "retries": 1,
    "start_period": 0.0,
    "healthy_threshold": 1,
}

ARGUMENT_SPEC = dict(
    project_dir=dict(type="path", required=True),
    project_name=dict(type="str"),
    source_dir=dict(type="path"),
    files=dict(type="list", elements="str", default=[]),
    contents=dict(type="dict", default={}, no_log=True),
    assets=dict(type="list", elements="str", default=[]),
    env_files=dict(type="list", elements="str"),
    profiles=dict(type="list", elements="str", default=[]),
    release=dict(type="str"),
    images=dict(type="dict", default={}),
    services=dict(type="dict", default={}),
    wait_timeout=dict(type="int", default=120),
    verify_seconds=dict(type="int", default=30),
    keep_releases=dict(type="int", default=5),
    keep_failed=dict(type="int", default=5),
    pull=dict(type="str", choices=["always", "missing", "never"], default="always"),
    prune_images=dict(type="bool", default=True),
    lock_timeout=dict(type="int", default=0),
    secret_versions=dict(type="list", elements="dict", default=[], no_log=False),
    mask_values=dict(type="list", elements="str", default=[], no_log=True),
    restart_policy=dict(type="str", default="unless-stopped"),
    nginx_switch_command=dict(type="path", default=DEFAULT_SWITCH_COMMAND),
    failure_log_lines=dict(type="int", default=10),
    deployed_by=dict(type="str"),
    state=dict(type="str", choices=["deployed", "rolled_back", "locked", "unlocked", "ran"], default="deployed"),
    lock_message=dict(type="str", default=""),
    run_service=dict(type="str"),
    run_command=dict(type="list", elements="str"),
    run_timeout=dict(type="int", default=600),
    schema_rollback=dict(type="str", choices=["warn", "refuse"], default="warn"),
    rollback_env=dict(type="str", choices=["release", "current"], default="release"),
)
REQUIRED_IF = [("state", "rolled_back", ["release"]), ("state", "ran", ["run_service", "run_command"])]
_MINIMA = {"wait_timeout": 1, "verify_seconds": 0, "keep_releases": 1, "keep_failed": 0, "lock_timeout": 0}
_MINIMA.update(failure_log_lines=0, run_timeout=1)


class OptionsError(ValueError):
    """Options that cannot be used; the message names each one and what it takes."""


# What the values a user types may hold: each reaches docker/compose argv or a file name, so
# anything that could be read as a second argument, a path outside the project or a new line is out.
_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}\Z")
_PROFILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_UPSTREAM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
_FILE_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}\Z")


def _check_values(p):
    """Names, references and paths: each checked against what it may be, the option named."""
    if p["project_name"] is not None and not _PROJECT_RE.match(p["project_name"]):
        raise OptionsError(
            f"project_name {p['project_name']!r} is not a Compose project name: 1-63 lower-case letters, digits, "
            "'_' and '-', starting with a letter or digit"
        )
    for service, image in p["images"].items():
        if not SERVICE_NAME_RE.match(str(service)):
            raise OptionsError(f"images: {service!r} is not a service name (letters, digits, '_', '.', '-')")
        if not isinstance(image, str) or not _IMAGE_RE.match(image):
            raise OptionsError(
                f"images.{service}: {image!r} is not an image reference such as registry:5000/team/api:v2 or "
                "repo/api@sha256:<digest> (no spaces, options or new lines)"
            )
    for service in p["services"] or {}:
        if not SERVICE_NAME_RE.match(str(service)):
            raise OptionsError(f"services: {service!r} is not a service name (letters, digits, '_', '.', '-')")
    for option in ("files", "env_files", "assets"):
        for name in p[option] or []:
            parts = name.split("/")
            if not _FILE_RE.match(name) or ".." in parts or parts[0] == ".ec2ops":
                raise OptionsError(
                    f"{option}: {name!r} must be a file name relative to project_dir, inside it: letters, digits, "
                    "'_', '.', '-' and '/', no '..' and not in .ec2ops"
                )
    for name, text in p["contents"].items():
        parts = str(name).split("/")
        if not _FILE_RE.match(str(name)) or ".." in parts or parts[0] == ".ec2ops":
            raise OptionsError(
                f"contents: {name!r} must be a file name relative to project_dir, inside it: letters, digits, "
                "'_', '.', '-' and '/', no '..' and not in .ec2ops"
            )
        if not isinstance(text, str):
            raise OptionsError(f"contents.{name}: the file's text is a string, not {type(text).__name__}")
        if name not in [*p["files"], *(p["env_files"] or [])]:
            raise OptionsError(f"contents: {name!r} is not in files or env_files: list it there too")
    for profile in p["profiles"]:
        if not _PROFILE_RE.match(profile):
            raise OptionsError(f"profiles: {profile!r} is not a Compose profile name (letters, digits, '_', '.', '-')")


def check_params(params):
    """Validate and complete compose_deploy's options (defaults filled in), services included."""
    result = ArgumentSpecValidator(ARGUMENT_SPEC, required_if=REQUIRED_IF).validate(params)
    if result.error_messages:
        raise OptionsError("; ".join(result.error_messages))
    checked = result.validated_parameters
    _check_minima(checked, _MINIMA, "")
    _check_values(checked)
    checked["services"] = check_services(checked["services"])
    return checked


def check_services(services):
    """Each service's options checked against SERVICE_SPEC: ``{name: complete options}``."""
    if not isinstance(services, dict):
        raise OptionsError("services must be a mapping of service name to options")
    checked = {}
    for name, options in services.items():
        where = f"services.{name}"
        result = ArgumentSpecValidator(SERVICE_SPEC).validate(dict(options or {}))
        if result.error_messages:
            raise OptionsError(f"{where}: " + "; ".join(result.error_messages))
        opts = result.validated_parameters
        _check_minima(opts, _SERVICE_MINIMA, where + ".")
        _check_minima(opts["health"], _HEALTH_MINIMA, where + ".health.")
        if opts["port"] is not None and opts["port"] > 65535:
            raise OptionsError(f"{where}.port must be a TCP port (1-65535), not {opts['port']}")
        if opts["nginx_upstream"] and not _UPSTREAM_RE.match(opts["nginx_upstream"]):
            raise OptionsError(
                f"{where}.nginx_upstream {opts['nginx_upstream']!r} is not an upstream name of the nginx role "
                "(letters, digits, '_', '.', '-')"
            )
        if opts["strategy"] == "rolling" and not (opts["nginx_upstream"] and opts["port"]):
            raise OptionsError(
                f"{where}: the rolling strategy needs nginx_upstream (the upstream name the nginx role "
                "manages) and port (the container port nginx sends traffic to)"
            )
        watch = opts["error_watch"]
        if watch is not None:
            if opts["strategy"] != "rolling":
                raise OptionsError(
                    f"{where}.error_watch needs the rolling strategy (it counts the answers of the new containers "
                    "nginx sends traffic to)"
                )
            if not 0 <= watch["max_percent"] < 100 or watch["min_requests"] < 1:
                raise OptionsError(
                    f"{where}.error_watch: max_percent is a percentage (0 to 100, not {watch['max_percent']}) and "
                    f"min_requests at least 1 (not {watch['min_requests']})"
                )
        if opts["release_command"] is not None and not (opts["release_command"] and opts["release_command"][0]):
            raise OptionsError(
                f"{where}.release_command is the command's argv, e.g. [python, manage.py, migrate]: "
                "give at least the program, or leave it out"
            )
        checked[name] = opts
    return checked


def _check_minima(options, minima, prefix):
    for option, smallest in minima.items():
        value = options.get(option)
        if value is not None and value < smallest:
            raise OptionsError(f"{prefix}{option} must be at least {smallest}, not {value}")
