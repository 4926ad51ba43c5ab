import io
import urllib.error

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._health import (
    HealthSpecError,
    container_state_check,
    header_references,
    http_check,
    mask,
    maskable_values,
    normalize_health,
    resolve_headers,
    wait_healthy,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_normalize_fills_defaults_and_rejects_bad_options():
    spec = normalize_health("api", {"url": "http://{ip}:8080/health", "interval": "0.5"})
    assert spec["interval"] == 0.5 and spec["status"] == 200 and spec["retries"] == 3
    for bad, message in (
        ({"urll": "x"}, "unknown option"),
        ({"url": "ftp://x"}, "must start with http"),
        ({"interval": "soon"}, "interval must be a number"),
        ({"retries": 0}, "at least 1"),
        ({"body": "("}, "not a valid regular expression"),
        ({"timeout": -1}, "must not be negative"),
    ):
        with pytest.raises(HealthSpecError, match=message):
            normalize_health("api", bad)


@pytest.mark.parametrize(
    ("state", "ok", "fatal", "text"),
    [
        (None, False, True, "not found"),
        ({"Status": "exited", "ExitCode": 3}, False, True, "exited with code 3"),
        ({"Status": "running", "Restarting": True}, False, True, "restarting"),
        ({"Status": "created"}, False, False, "created"),
        ({"Status": "running"}, True, False, "no container healthcheck"),
        ({"Status": "running", "Health": {"Status": "healthy"}}, True, False, "healthy"),
        ({"Status": "running", "Health": {"Status": "starting"}}, False, False, "starting"),
        (
            {"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"Output": "curl: (22) 503\n"}]}},
            False,
            True,
            "last output: curl: (22) 503",
        ),
    ],
)
def test_container_state_check(state, ok, fatal, text):
    got_ok, detail, got_fatal = container_state_check(state)
    assert (got_ok, got_fatal) == (ok, fatal)
    assert text in detail


class Response(io.BytesIO):
    def __init__(self, status, body):
        super().__init__(body.encode())
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_http_check_status_body_and_errors():
    assert http_check("http://x/h", opener=lambda url, timeout: Response(200, '{"status": "ok"}'))[0]
    ok, detail = http_check("http://x/h", body='"ok"', opener=lambda url, timeout: Response(200, '{"status": "down"}'))
    assert not ok and "does not match" in detail and "down" in detail

    def http_error(url, timeout):
        raise urllib.error.HTTPError("http://x/h", 503, "Service Unavailable", {}, io.BytesIO(b"failing"))

    ok, detail = http_check("http://x/h", opener=http_error)
    assert not ok and "HTTP 503, expected 200; body: failing" in detail

    def refused(url, timeout):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    ok, detail = http_check("http://x/h", opener=refused)
    assert not ok and "Connection refused" in detail


def test_http_check_masks_the_body_before_cutting_it():
    """A secret across the 200-character cut must not leak its first characters."""
    token = "tok-" + "9" * 12 + "-secret-tail"
    body = "x" * 190 + token + " and more"
    ok, detail = http_check("http://x/h", opener=lambda url, timeout: Response(500, body), secrets=[token])
    assert not ok
    assert "tok-99" not in detail and "***" in detail
    # Without the mask-first order the cut would leave "tok-999999" in the detail.
    assert len(detail.split("body: ", 1)[1]) <= 200


def test_maskable_values_leave_plain_numbers_and_flags_readable():
    found = maskable_values(["8080", "true", "no", "abc", "postgres://u:p@h/db", "123456", "S3cr3t!", 5])
    assert found == {"postgres://u:p@h/db", "123456", "S3cr3t!"}


def sequence(*results):
    items = list(results)

    def check():
        return items.pop(0) if len(items) > 1 else items[0]

    return check


def test_wait_healthy_needs_consecutive_passes():
    clock = FakeClock()
    spec = normalize_health("api", {"interval": 1, "healthy_threshold": 2})
    check = sequence((True, "ok", False), (False, "blip", False), (True, "ok", False), (True, "ok", False))
    result = wait_healthy(check, spec, deadline=60, clock=clock, sleep=clock.sleep)
    assert result.ok and result.seconds == 3


def test_wait_healthy_stops_at_the_deadline_and_on_fatal():
    clock = FakeClock()
    spec = normalize_health("api", {"interval": 1})
    result = wait_healthy(sequence((False, "503", False)), spec, deadline=5, clock=clock, sleep=clock.sleep)
    assert not result.ok and not result.fatal and "last check: 503" in result.detail
    assert clock.now <= 5
    clock = FakeClock()
    check = sequence((False, "starting", False), (False, "exited", True))
    result = wait_healthy(check, spec, deadline=60, clock=clock, sleep=clock.sleep)
    assert not result.ok and result.fatal and result.detail == "exited" and clock.now == 1


def test_headers_are_validated():
    spec = normalize_health("api", {"headers": {"X-Auth-Token": "${AUTHN_TOKEN}", "Accept": "application/json"}})
    assert spec["headers"]["X-Auth-Token"] == "${AUTHN_TOKEN}"
    assert normalize_health("api", None)["headers"] is None
    for bad, message in (
        ({"headers": ["X-Auth-Token"]}, "must be a mapping"),
        ({"headers": {"Bad Header": "x"}}, "not a valid header name"),
        ({"headers": {"X-A": 1}}, "must be a string"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "one line"),
        ({"headers": {"X-A": "${lower-case}"}}, "only \\$\\{NAME\\} references"),
        ({"headers": {"X-A": "${A:-default}"}}, "only \\$\\{NAME\\} references"),
    ):
        with pytest.raises(HealthSpecError, match=message):
            normalize_health("api", bad)


def test_resolve_headers_from_env_names_variables_never_values():
    headers = {"X-Auth-Token": "${AUTHN_TOKEN}", "Authorization": "Bearer ${A}${B}", "Accept": "*/*"}
    assert header_references(headers) == ["AUTHN_TOKEN", "A", "B"]
    resolved, secrets = resolve_headers(headers, {"AUTHN_TOKEN": "s3cret-token", "A": "x1", "B": "y2"})
    assert resolved == {"X-Auth-Token": "s3cret-token", "Authorization": "Bearer x1y2", "Accept": "*/*"}
    assert secrets == ["s3cret-token", "x1", "y2"]
    with pytest.raises(HealthSpecError) as info:
        resolve_headers(headers, {"AUTHN_TOKEN": "", "A": "x", "B": "y"})
    assert "X-Auth-Token: ${AUTHN_TOKEN} is not set" in str(info.value)


def test_http_check_sends_headers_and_masks_their_values():
    seen = {}

    def echoing(url, timeout, headers):
        seen.update(headers)
        token = headers.get("X-Auth-Token")
        if token != "s3cret-token":
            raise urllib.error.HTTPError(url, 401, "Unauthorized", {}, io.BytesIO(f"bad token {token}".encode()))
        return Response(200, f'{{"token_echo": "{token}"}}')

    ok, detail = http_check(
        "http://x/about",
        body="nomatch",
        opener=echoing,
        headers={"X-Auth-Token": "s3cret-token"},
        secrets=["s3cret-token"],
    )
    assert seen == {"X-Auth-Token": "s3cret-token"}
    assert not ok and "s3cret-token" not in detail and "***" in detail
    ok, detail = http_check(
        "http://x/about", opener=echoing, headers={"X-Auth-Token": "wrong-token"}, secrets=["wrong-token"]
    )
    assert not ok and "HTTP 401" in detail and "wrong-token" not in detail
    # Without headers the opener is called as before (no headers keyword).
    assert http_check("http://x/h", opener=lambda url, timeout: Response(200, "ok"))[0]
    assert mask("a 1 b", ["1"]) == "a 1 b"
