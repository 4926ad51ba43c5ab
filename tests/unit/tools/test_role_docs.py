"""tools/role_docs.py: the role READMEs' variable tables come from the specs, and a drifted default fails."""

import importlib.util
import pathlib
import shutil

import yaml

_PATH = pathlib.Path(__file__).resolve().parents[3] / "tools" / "role_docs.py"
_SPEC = importlib.util.spec_from_file_location("ec2ops_role_docs", _PATH)
role_docs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(role_docs)

SPEC = {
    "argument_specs": {
        "main": {
            "short_description": "x",
            "options": {
                "demo_port": {"type": "int", "default": 8080, "description": "Port of C(demo) (O(demo_mode))."},
                "demo_mode": {"type": "str", "choices": ["a", "b"], "default": "a", "description": "Mode | kind."},
                "demo_options": {"type": "dict", "description": "Long, left to defaults/main.yml."},
            },
        }
    }
}


def make_role(root, defaults):
    role = root / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(SPEC))
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    (role / "README.md").write_text("# demo\n\nHand-written text.\n")
    return role


def test_write_then_check_is_clean_and_keeps_the_hand_written_text(tmp_path):
    role = make_role(tmp_path, {"demo_port": 8080, "demo_mode": "a", "demo_options": {"k": 1}})
    assert role_docs.run(tmp_path, write=False) == [
        "demo: README.md's variable table is not what meta/argument_specs.yml gives; "
        "run python tools/role_docs.py --write and commit it"
    ]
    assert role_docs.run(tmp_path, write=True) == []
    text = (role / "README.md").read_text()
    assert text.startswith("# demo\n\nHand-written text.\n\n## Variables\n")
    assert "| `demo_port` | int | `8080` | Port of `demo` (`demo_mode`). |" in text
    assert "| `demo_mode` | str | `a` | Mode \\| kind. Choices: `a`, `b`. |" in text
    assert "| `demo_options` | dict | see `defaults/main.yml` |" in text
    assert role_docs.run(tmp_path, write=False) == []
    # A hand edit inside the generated block is caught; outside it is the README's own.
    (role / "README.md").write_text(text.replace("`8080`", "`9090`") + "\nMore hand-written text.\n")
    assert len(role_docs.run(tmp_path, write=False)) == 1
    role_docs.run(tmp_path, write=True)
    assert (role / "README.md").read_text().endswith("More hand-written text.\n")


def test_a_default_changed_in_one_place_only_fails_naming_both(tmp_path):
    make_role(tmp_path, {"demo_port": 9090, "demo_mode": "a"})
    role_docs.run(tmp_path, write=True)
    assert role_docs.run(tmp_path, write=False) == [
        "demo: the default of demo_port is 9090 in defaults/main.yml but 8080 in meta/argument_specs.yml; "
        "make them the same"
    ]


def test_the_repository_is_clean(tmp_path):
    """The real roles: what the lint stage checks (a copy, so the test never writes the tree)."""
    shutil.copytree(_PATH.parents[1] / "roles", tmp_path / "roles")
    assert role_docs.run(tmp_path, write=False) == []
