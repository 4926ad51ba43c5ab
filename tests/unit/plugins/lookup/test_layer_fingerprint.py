from ansible_collections.ec2ops.stack.plugins.lookup.layer_fingerprint import fingerprint, tree_digest


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
