import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import (
    DeployError,
    pinned_reference,
    rolling_conflicts,
    topological_order,
)


def test_topological_order_puts_dependencies_first():
    services = {
        "api": {"depends_on": {"db": {}, "cache": {}}},
        "worker": {"depends_on": {"api": {}}},
        "db": {},
        "cache": {"depends_on": {"db": {}}},
    }
    order = topological_order(services)
    assert sorted(order) == sorted(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert order.index(dep) < order.index(name)


def test_topological_order_refuses_cycles():
    with pytest.raises(DeployError, match="cycle"):
        topological_order({"a": {"depends_on": {"b": {}}}, "b": {"depends_on": {"a": {}}}})


def test_rolling_conflicts_name_what_blocks_two_copies():
    seed_style = {"container_name": "api", "ports": [{"published": "8000", "target": 8080}]}
    assert rolling_conflicts("api", seed_style) == ["container_name: api", "ports: 8000:8080"]
    assert rolling_conflicts("api", {"ports": [{"target": 8080}]}) == []


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("reg:5000/api:v2", "reg:5000/api@sha256:bb"),
        ("reg:5000/api", "reg:5000/api@sha256:bb"),
        ("other/api:v2", "sha256:id"),
    ],
)
def test_pinned_reference_prefers_the_matching_repo_digest(image, expected):
    inspect = {"Id": "sha256:id", "RepoDigests": ["mirror/api@sha256:aa", "reg:5000/api@sha256:bb"]}
    assert pinned_reference(image, inspect) == expected


def test_override_frees_rolling_services_from_fixed_names_and_ports(tmp_path):
    from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import Deployer

    params = {
        "project_dir": str(tmp_path),
        "services": {"api": {"strategy": "rolling", "nginx_upstream": "api", "port": 8080}},
    }
    deployer = Deployer(docker=None, params=params)
    own = {
        "api": {"container_name": "api", "ports": [{"published": "8000", "target": 8080}]},
        "db": {"container_name": "db", "ports": [{"published": "5432", "target": 5432}]},
    }
    path = tmp_path / "images.yml"
    deployer._write_override(str(path), {"api": "reg/api@sha256:aa"}, own)
    text = path.read_text()
    assert 'image: "reg/api@sha256:aa"' in text
    assert "container_name: !reset null" in text and "ports: !reset []" in text
    # A recreate service keeps its name and ports.
    assert text.count("!reset") == 2
    assert path.stat().st_mode & 0o777 == 0o600


def test_rolling_without_an_upstream_is_refused(tmp_path):
    from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import Deployer

    with pytest.raises(DeployError, match="nginx_upstream"):
        Deployer(docker=None, params={"project_dir": str(tmp_path), "services": {"api": {"strategy": "rolling"}}})
    with pytest.raises(DeployError, match="strategy must be one of"):
        Deployer(docker=None, params={"project_dir": str(tmp_path), "services": {"api": {"strategy": "bluegreen"}}})


def test_health_headers_resolve_from_the_release_env_files_at_check_time(tmp_path):
    from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import Deployer

    (tmp_path / "judge0.conf").write_text("AUTHN_HEADER='X-Auth-Token'\n")
    (tmp_path / "secrets.env").write_text("AUTHN_TOKEN=first\n")
    params = {
        "project_dir": str(tmp_path),
        "services": {"server": {"health": {"url": "http://{ip}:2358/about", "headers": {"X-T": "${AUTHN_TOKEN}"}}}},
    }
    deployer = Deployer(docker=None, params=params)
    deployer._compose(files=["compose.yml"], env_files=["judge0.conf", "secrets.env"])
    spec = deployer.health["server"]
    assert deployer._headers_for(spec) == ({"X-T": "first"}, ["first"])
    # Read again at each check: a restored env file (rollback) is what the next check uses.
    (tmp_path / "secrets.env").write_text("AUTHN_TOKEN='second'\n")
    assert deployer._headers_for(spec) == ({"X-T": "second"}, ["second"])
    (tmp_path / "secrets.env").write_text("OTHER=1\n")
    with pytest.raises(Exception, match=r"\$\{AUTHN_TOKEN\} is not set") as info:
        deployer._headers_for(spec)
    assert "second" not in str(info.value)
