# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks for a deployed container: the container's own healthcheck and/or HTTP.

This is a private module_utils (leading underscore): no stable API.

A check answers ``(ok, detail)``. ``wait_healthy`` polls until the checks pass
``healthy_threshold`` times in a row, the container dies, or the deadline passes.
Time and sleeping are injectable for unit tests.

HTTP checks may send ``headers``. A header value can name variables of the project's env files
(``${AUTHN_TOKEN}``), so a token never has to be a module argument: ``resolve_headers`` reads
them on the host at check time, and ``http_check`` removes every resolved value from what it
reports (details and errors name the header and the variable, never the value).
"""

import re
import time
import urllib.error

from ansible.module_utils.urls import open_url

DEFAULT_HEALTH = {
    "container": True,
    "url": None,
    "status": 200,
    "body": None,
    "interval": 1.0,
    "timeout": 2.0,
    "retries": 3,
    "start_period": 0.0,
    "healthy_threshold": 1,
    "headers": None,
}

# A header name (an HTTP token) and a ${NAME} reference to an env-file variable.
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_REFERENCE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Values shorter than this are not masked in details (masking "1" would garble every number).
_MIN_MASKED_LENGTH = 4


class HealthSpecError(ValueError):
    """A health option that cannot be used; the message names it."""


def normalize_health(service, spec):
    """Merge a user's health options over the defaults and check them."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(DEFAULT_HEALTH))
    if unknown:
        raise HealthSpecError(
            f"services.{service}.health: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(DEFAULT_HEALTH))}"
        )
    merged = dict(DEFAULT_HEALTH)
    merged.update({k: v for k, v in spec.items() if v is not None})
    for key in ("interval", "timeout", "start_period"):
        try:
            merged[key] = float(merged[key])
        except (TypeError, ValueError):
            raise HealthSpecError(f"services.{service}.health.{key} must be a number of seconds") from None
        if merged[key] < 0:
            raise HealthSpecError(f"services.{service}.health.{key} must not be negative")
    for key in ("retries", "healthy_threshold", "status"):
        try:
            merged[key] = int(merged[key])
        except (TypeError, ValueError):
            raise HealthSpecError(f"services.{service}.health.{key} must be a whole number") from None
    if merged["retries"] < 1 or merged["healthy_threshold"] < 1:
        raise HealthSpecError(f"services.{service}.health: retries and healthy_threshold must be at least 1")
    if merged["url"] is not None and not re.match(r"https?://", str(merged["url"])):
        raise HealthSpecError(f"services.{service}.health.url must start with http:// or https://")
    headers = merged["headers"]
    if headers is not None:
        if not isinstance(headers, dict):
            raise HealthSpecError(f"services.{service}.health.headers must be a mapping of header name to value")
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
                raise HealthSpecError(f"services.{service}.health.headers: {name!r} is not a valid header name")
            if not isinstance(value, str):
                raise HealthSpecError(f"services.{service}.health.headers.{name} must be a string")
            if "\n" in value or "\r" in value:
                raise HealthSpecError(f"services.{service}.health.headers.{name} must be one line")
            rest = _REFERENCE_RE.sub("", value)
            if "${" in rest:
                raise HealthSpecError(
                    f"services.{service}.health.headers.{name}: only ${{NAME}} references to env-file variables "
                    "are supported"
                )
    if merged["body"] is not None:
        try:
            re.compile(merged["body"])
        except re.error as exc:
            raise HealthSpecError(f"services.{service}.health.body is not a valid regular expression: {exc}") from None
    return merged


def container_state_check(state):
    """Judge a container from ``docker inspect``'s ``.State``: ``(ok, detail, fatal)``.

    ``fatal`` means waiting longer cannot help (the container exited or keeps restarting).
    A container without a healthcheck counts as healthy while it runs.
    """
    if not state:
        return False, "container not found", True
    status = state.get("Status")
    if status in ("exited", "dead"):
        return False, f"container {status} with code {state.get('ExitCode')}", True
    if state.get("Restarting") or status == "restarting":
        return False, "container is restarting (crash loop)", True
    if status != "running":
        return False, f"container is {status}", False
    health = (state.get("Health") or {}).get("Status")
    if health is None:
        return True, "running (no container healthcheck)", False
    if health == "healthy":
        return True, "container healthcheck: healthy", False
    log = (state.get("Health") or {}).get("Log") or []
    last = log[-1].get("Output", "").strip()[-200:] if log else ""
    # Docker says unhealthy only after the check failed `retries` times: the app's own verdict.
    return (
        False,
        f"container healthcheck: {health}" + (f" (last output: {last})" if last else ""),
        health == "unhealthy",
    )


def start_marker(details):
    """``(StartedAt, RestartCount)`` from ``docker inspect``: it changes whenever the container restarts."""
    return (details.get("State") or {}).get("StartedAt"), int(details.get("RestartCount") or 0)


def header_references(headers):
    """The env-file variables the header values name, in order."""
    names = []
    for value in (headers or {}).values():
        for name in _REFERENCE_RE.findall(value):
            if name not in names:
                names.append(name)
    return names


def resolve_headers(headers, env):
    """``(resolved headers, secret values)``: ``${NAME}`` replaced from ``env`` (a dict of the env files).

    A missing or empty variable raises HealthSpecError naming the header and the variable only.
    Every substituted value is returned in ``secrets`` so callers can mask it.
    """
    resolved, secrets = {}, []
    for name, value in (headers or {}).items():

        def substitute(match, header=name):
            var = match.group(1)
            found = env.get(var)
            if not found:
                raise HealthSpecError(
                    f"health header {header}: ${{{var}}} is not set (or empty) in the project's env files"
                )
            secrets.append(found)
            return found

        resolved[name] = _REFERENCE_RE.sub(substitute, value)
    return resolved, secrets


# Env-file values too common to be secret, left readable: masking "8080" or "true" would garble
# every URL and flag in a message. Anything longer, or not a plain number/word like these, is masked.
_PLAIN_WORDS = frozenset(("true", "false", "yes", "no", "on", "off", "null", "none"))


def maskable_values(values):
    """The values (of a release's env files) worth masking: long enough, not a plain number or flag."""
    found = set()
    for value in values:
        if not isinstance(value, str) or len(value) < _MIN_MASKED_LENGTH:
            continue
        if (value.isdigit() and len(value) < 6) or value.lower() in _PLAIN_WORDS:
            continue
        found.add(value)
    return found


def mask(text, secrets):
    """``text`` with every secret value replaced by ``***``."""
    for secret in sorted(set(secrets or ()), key=len, reverse=True):
        if len(secret) >= _MIN_MASKED_LENGTH:
            text = text.replace(secret, "***")
    return text


def mask_tree(value, secrets):
    """``value`` (strings, lists and dicts, nested) with every secret in its strings masked."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, list):
        return [mask_tree(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: mask_tree(v, secrets) for k, v in value.items()}
    return value


def http_check(url, status=200, body=None, timeout=2.0, opener=open_url, headers=None, secrets=()):
    """GET ``url``: ``(ok, detail)``; detail has the status and the start of the body.

    ``headers`` are sent with the request; ``secrets`` (resolved header values) never appear in
    the detail, not even when the server echoes them.
    """
    ok, detail, text = _http_check(url, status, body, timeout, opener, headers)
    if text is not None:
        # Mask the whole body first, then cut it: a secret across the cut would leak its start.
        detail += " ".join(mask(text, secrets).split())[:200]
    return ok, mask(detail, secrets)


def _http_check(url, status, body, timeout, opener, headers):
    kwargs = {"headers": headers} if headers else {}
    try:
        with opener(url, timeout=timeout, **kwargs) as response:
            code = response.status
            text = response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        code = exc.code
        text = exc.read(4096).decode("utf-8", "replace") if exc.fp else ""
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"GET {url}: {reason}", None
    if code != status:
        return False, f"GET {url}: HTTP {code}, expected {status}; body: ", text
    if body is not None and not re.search(body, text):
        return False, f"GET {url}: HTTP {code} but the body does not match {body!r}; body: ", text
    return True, f"GET {url}: HTTP {code}", None


class HealthResult:
    def __init__(self, ok, detail, seconds, fatal=False):
        self.ok = ok
        self.detail = detail
        self.seconds = seconds
        self.fatal = fatal


def wait_healthy(check, spec, deadline, clock=time.monotonic, sleep=time.sleep):
    """Poll ``check()`` -> ``(ok, detail, fatal)`` until healthy, fatal, or ``deadline`` (a clock value)."""
    start = clock()
    passes = 0
    detail = "not checked yet"
    while True:
        ok, detail, fatal = check()
        now = clock()
        if ok:
            passes += 1
            if passes >= spec["healthy_threshold"]:
                return HealthResult(True, detail, now - start)
        else:
            passes = 0
            if fatal:
                return HealthResult(False, detail, now - start, fatal=True)
        if now + spec["interval"] > deadline:
            return HealthResult(False, f"not healthy within the wait timeout; last check: {detail}", now - start)
        sleep(spec["interval"])
