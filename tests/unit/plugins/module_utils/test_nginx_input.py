"""Issue 20: nginx input is validated; hostile values are refused naming the value, before rendering."""

import pytest
from ansible_collections.ec2ops.stack.plugins.filter.nginx_input_problems import nginx_input_problems
from ansible_collections.ec2ops.stack.plugins.module_utils._nginx_input import problems

SITE = {
    "name": "shop",
    "server_names": ["shop.example.com", "*.shop.example.com", "_", "127.0.0.1", "[::1]"],
    "tls_mode": "selfsigned",
    "security_headers": {"X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'; img-src *"},
    "locations": [
        {"path": "/", "upstream": "app"},
        {"path": "/api/v1/", "upstream": "app"},
        {"path": "= /health", "upstream": "app"},
        {"path": "^~ /static/", "root": "/srv/static"},
        {"path": "/admin", "upstream": "app", "basic_auth": {"users": [{"name": "ops", "password": "x"}]}},
    ],
}
UPSTREAMS = {"app": {"servers": ["127.0.0.1:8080", "10.0.1.5:8080 weight=2 max_fails=3", "unix:/run/app.sock"]}}


def with_site(**change):
    return [dict(SITE, **change)]


def test_a_good_site_has_no_problem():
    assert problems([SITE], UPSTREAMS) == []
    assert nginx_input_problems([SITE], upstreams=UPSTREAMS) == []


@pytest.mark.parametrize(
    "value",
    ["a.com; include /etc/shadow", "a.com{", "a.com }", 'a."com', "a.com\nserver_name b", "a com", "a.com#x",
     "~^(www)\\.a\\.com$", "", "a..com", "-a.com-"],
)  # fmt: skip
def test_hostile_server_names_are_refused_naming_them(value):
    found = problems(with_site(server_names=["ok.example.com", value]), UPSTREAMS)
    assert len(found) == 1 and repr(value) in found[0] and "site 'shop'" in found[0]


@pytest.mark.parametrize(
    "path",
    ["/a; return 200", "/a {", "/a }", '/a"', "/a b", "api", "/a#frag", "/a\n", "~ ^/a", "= /a b", "/a'"],
)
def test_hostile_location_paths_are_refused_naming_them(path):
    found = problems(with_site(locations=[{"path": path, "upstream": "app"}]), UPSTREAMS)
    assert len(found) == 1 and repr(path) in found[0] and "location path" in found[0]


@pytest.mark.parametrize(
    ("headers", "named"),
    [({"X-A;b": "1"}, "header name 'X-A;b'"), ({"X A": "1"}, "header name 'X A'"),
     ({"X-A": "1\nadd_header X-B 2"}, "value of header 'X-A'"), ({"X-A": "a\rb"}, "value of header 'X-A'")],
)  # fmt: skip
def test_hostile_headers_are_refused(headers, named):
    found = problems(with_site(security_headers=headers), UPSTREAMS)
    assert len(found) == 1 and named in found[0]


@pytest.mark.parametrize(
    ("upstreams", "named"),
    [({"app;x": {"servers": ["127.0.0.1:1"]}}, "upstream 'app;x'"),
     ({"app": {"servers": ["127.0.0.1:1; include /x"]}}, "server '127.0.0.1:1; include /x'"),
     ({"app": {"servers": ["127.0.0.1:1 }"]}}, "server '127.0.0.1:1 }'"),
     ({"app": {"servers": []}}, "servers must be a non-empty list"),
     ({"app": {}}, "servers must be a non-empty list")],
)  # fmt: skip
def test_hostile_upstreams_are_refused(upstreams, named):
    found = problems([SITE], upstreams)
    assert any(named in line for line in found), found


def test_every_problem_is_reported_at_once_with_its_own_sentence():
    bad = dict(
        SITE, name="bad name", tls_mode="tls", server_names=[], locations=[{"path": "/", "upstream": "a", "root": "/"}]
    )
    found = problems([bad, dict(SITE, tls_mode="provided"), dict(SITE, tls_mode="letsencrypt")], {}, "apt")
    assert "nginx_install_source 'apt' is not one of distro, nginx_org" in found
    joined = "\n".join(found)
    for expected in ("name must be 1-100 letters", "tls_mode 'tls' is not one of", "server_names must be a non-empty",
                     "has both upstream and root", "two sites have this name", "needs tls_certificate ",
                     "needs tls_certificate_key", "needs nginx_letsencrypt_email"):  # fmt: skip
        assert expected in joined, expected


def test_basic_auth_users_need_a_name_without_colon_and_a_password():
    auth = {"users": [{"password": "x"}, {"name": "a:b", "password": "x"}, {"name": "ops"}]}
    found = problems(with_site(locations=[{"path": "/admin", "upstream": "app", "basic_auth": auth}]), UPSTREAMS)
    assert [line.split(": ", 1)[1] for line in found] == [
        "location '/admin' has a basic_auth user without a name",
        "basic_auth user name 'a:b' must not hold ':' or control characters",
        "basic_auth user 'ops' needs password or password_hash",
    ]
