# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is wrong with the nginx role's input, one sentence per problem, each naming the value and the fix.

This is a private module_utils (leading underscore): no stable API.

The role writes site names, server names, location paths, upstream servers and header names and
values into nginx's configuration. A value holding ``;``, ``{``, a quote, a space or a newline
would become configuration of its own (``server_names: ["a.com; include /etc/shadow"]``), so
every such value is checked here against what nginx accepts as one token, before anything is
rendered. The role fails with all problems at once (``nginx_input_problems`` filter).
"""

import re

TLS_MODES = ("none", "selfsigned", "provided", "letsencrypt")
INSTALL_SOURCES = ("distro", "nginx_org")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# A host name (optionally *.name or name.*), "_", "localhost", an IPv4 or a bracketed IPv6 address.
_SERVER_NAME = re.compile(
    rf"(\*\.)?{_LABEL}(\.{_LABEL})*(\.\*)?\Z|_\Z|\d{{1,3}}(\.\d{{1,3}}){{3}}\Z|\[[0-9A-Fa-f:.]+\]\Z"
)
# A URI path: the characters RFC 3986 allows in a path, without quotes, spaces, ';', braces or '#'.
_PATH = re.compile(r"/[A-Za-z0-9._~!&()*+,=:@%/-]{0,1000}\Z")
_LOCATION_MODIFIERS = ("=", "^~")
# host:port, unix:/path, or an address; with nginx's server parameters (weight=2 max_fails=3 backup ...).
_SERVER = re.compile(
    r"(unix:/[A-Za-z0-9._/-]+|[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?(\s+[a-z_]+(=[A-Za-z0-9.]+)?)*\Z"
)
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,100}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def problems(sites, upstreams, install_source="distro", letsencrypt_email=""):
    """Every problem of ``sites`` (the role's sites with defaults filled in) and ``upstreams``, as sentences."""
    found = []
    if install_source not in INSTALL_SOURCES:
        found.append(f"nginx_install_source {install_source!r} is not one of {', '.join(INSTALL_SOURCES)}")
    found += _upstream_problems(upstreams)
    seen = set()
    for index, site in enumerate(sites if isinstance(sites, list) else []):
        found += _site_problems(index, site, seen, letsencrypt_email)
    if not isinstance(sites, list):
        found.append("nginx_sites must be a list of sites")
    return found


def _site_problems(index, site, seen, letsencrypt_email):
    if not isinstance(site, dict):
        return [f"nginx_sites[{index}] must be a mapping (name, server_names, locations ...)"]
    name = site.get("name")
    where = f"site {name!r}" if isinstance(name, str) else f"nginx_sites[{index}]"
    found = []
    if not isinstance(name, str) or not _NAME.match(name):
        found.append(f"{where}: name must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
    elif name in seen:
        found.append(f"{where}: two sites have this name; names must be unique")
    seen.add(name)
    mode = site.get("tls_mode")
    if mode not in TLS_MODES:
        found.append(f"{where}: tls_mode {mode!r} is not one of {', '.join(TLS_MODES)}")
    if mode == "letsencrypt" and not letsencrypt_email:
        found.append(f"{where}: tls_mode letsencrypt needs nginx_letsencrypt_email")
    if mode == "provided":
        for option in ("tls_certificate", "tls_certificate_key"):
            if not site.get(option):
                found.append(f"{where}: tls_mode provided needs {option} (the file's path on the host)")
    found += _server_name_problems(where, site.get("server_names"))
    found += _header_problems(where, site.get("security_headers") or {})
    locations = site.get("locations") or []
    paths = set()
    for position, location in enumerate(locations if isinstance(locations, list) else []):
        found += _location_problems(where, position, location, paths)
    return found


def _server_name_problems(where, names):
    if not isinstance(names, list) or not names:
        return [f"{where}: server_names must be a non-empty list of host names (e.g. [shop.example.com])"]
    return [
        f"{where}: server name {value!r} is not a host name, '_', an IPv4 or a [IPv6] address "
        "(letters, digits, '-', '_' and dots; '*.' or '.*' at an end); nothing else may reach nginx's configuration"
        for value in names
        if not isinstance(value, str) or not _SERVER_NAME.match(value)
    ]


def _location_problems(where, position, location, paths):
    if not isinstance(location, dict):
        return [f"{where}: locations[{position}] must be a mapping (path, upstream or root ...)"]
    path = location.get("path")
    found = []
    if not isinstance(path, str) or not _valid_location_path(path):
        found.append(
            f"{where}: location path {path!r} must be a URI path starting with '/' (optionally after '=' or '^~'), "
            "without spaces, quotes, ';', '{', '}' or '#'"
        )
    elif path in paths:
        found.append(f"{where}: two locations have the path {path!r}")
    paths.add(path)
    if "upstream" in location and "root" in location:
        found.append(f"{where}: location {path!r} has both upstream and root; choose one")
    auth = location.get("basic_auth")
    if isinstance(auth, dict):
        for user in auth.get("users") or []:
            if not isinstance(user, dict) or not user.get("name"):
                found.append(f"{where}: location {path!r} has a basic_auth user without a name")
            elif ":" in user["name"] or _CONTROL.search(user["name"]):
                found.append(f"{where}: basic_auth user name {user['name']!r} must not hold ':' or control characters")
            elif "password" not in user and "password_hash" not in user:
                found.append(f"{where}: basic_auth user {user['name']!r} needs password or password_hash")
    return found


def _valid_location_path(path):
    parts = path.split(" ")
    if len(parts) == 2 and parts[0] in _LOCATION_MODIFIERS:
        parts = parts[1:]
    return len(parts) == 1 and bool(_PATH.match(parts[0]))


def _header_problems(where, headers):
    if not isinstance(headers, dict):
        return [f"{where}: security_headers must be a mapping of header name to value"]
    found = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            found.append(f"{where}: header name {name!r} must be letters, digits and '-'")
        if not isinstance(value, str) or _CONTROL.search(value):
            found.append(f"{where}: the value of header {name!r} must be text without control characters or newlines")
    return found


def _upstream_problems(upstreams):
    if not isinstance(upstreams, dict):
        return ["nginx_upstreams must be a mapping of upstream name to {servers: [...]}"]
    found = []
    for name, upstream in upstreams.items():
        if not isinstance(name, str) or not _UPSTREAM_NAME.match(name):
            found.append(f"upstream {name!r}: the name must be letters, digits, '_', '.' or '-'")
        servers = upstream.get("servers") if isinstance(upstream, dict) else None
        if not isinstance(servers, list) or not servers:
            found.append(f"upstream {name!r}: servers must be a non-empty list (e.g. [127.0.0.1:8080])")
            continue
        found += [
            f"upstream {name!r}: server {server!r} must be host:port or unix:/path, with nginx server parameters "
            "(weight=2, backup ...) only"
            for server in servers
            if not isinstance(server, str) or not _SERVER.match(server)
        ]
    return found
