import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible_collections.ec2ops.stack.plugins.lookup.layer_fingerprint import LookupModule, fingerprint, tree_digest


def test_tree_digest_follows_names_and_content(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    first = tree_digest(str(tmp_path))
    assert first == tree_digest(str(tmp_path))
    (tmp_path / "tasks" / "main.yml").write_text("- ansible.builtin.ping: {}\n")
    assert tree_digest(str(tmp_path)) != first
    (tmp_path / "tasks" / "main.yml").write_text("- ansible.builtin.ping:\n")
    (tmp_path / "tasks" / "main.yml").rename(tmp_path / "tasks" / "other.yml")
    assert tree_digest(str(tmp_path)) != first
    # Byte-code caches are not part of a role.
    (tmp_path / "tasks" / "other.yml").rename(tmp_path / "tasks" / "main.yml")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert tree_digest(str(tmp_path)) == first


def test_fingerprint_changes_with_any_variable_and_not_with_their_order():
    base = fingerprint("nginx", "code", {"nginx_a": 1, "nginx_b": ["x"]})
    assert base == fingerprint("nginx", "code", {"nginx_b": ["x"], "nginx_a": 1})
    assert base != fingerprint("nginx", "code", {"nginx_a": 2, "nginx_b": ["x"]})
    assert base != fingerprint("nginx", "code2", {"nginx_a": 1, "nginx_b": ["x"]})
    assert base != fingerprint("docker", "code", {"nginx_a": 1, "nginx_b": ["x"]})


def lookup():
    loader = DataLoader()
    return LookupModule(loader=loader, templar=Templar(loader=loader))


def test_only_limits_the_fingerprint_to_the_named_variables():
    """compose_app's host set-up is fingerprinted without its release, which changes with every run."""
    setup = ["compose_app_dir", "compose_app_owner"]
    run_v1 = {"compose_app_dir": "/srv/shop", "compose_app_release": "v1"}
    run_v2 = dict(run_v1, compose_app_release="v2")
    assert lookup().run(["compose_app"], run_v1, only=setup) == lookup().run(["compose_app"], run_v2, only=setup)
    assert lookup().run(["compose_app"], run_v1) != lookup().run(["compose_app"], run_v2)
    moved = dict(run_v1, compose_app_dir="/srv/other")
    assert lookup().run(["compose_app"], run_v1, only=setup) != lookup().run(["compose_app"], moved, only=setup)
    # Set or not set is a difference too.
    owned = dict(run_v1, compose_app_owner="deploy")
    assert lookup().run(["compose_app"], run_v1, only=setup) != lookup().run(["compose_app"], owned, only=setup)


def test_unknown_keywords_are_refused():
    with pytest.raises(AnsibleError, match="only=\\[variable names\\]"):
        lookup().run(["nginx"], {}, onyl=["nginx_sites"])
