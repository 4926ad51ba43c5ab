import json
import os

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._layer_state import (
    LayerStateError,
    check,
    path_digest,
    read_state,
    record,
)


@pytest.fixture
def layer(tmp_path):
    """An nginx-like layer: a config directory with an upstreams.d that something else rewrites."""
    conf = tmp_path / "etc-nginx"
    (conf / "sites.d").mkdir(parents=True)
    (conf / "upstreams.d").mkdir()
    (conf / "nginx.conf").write_text("worker_processes auto;\n")
    (conf / "sites.d" / "app.conf").write_text("server {}\n")
    (conf / "upstreams.d" / "app.conf").write_text("upstream app { server 10.0.0.2:8080; }\n")
    script = tmp_path / "switch"
    script.write_text("#!/bin/sh\n")
    states = tmp_path / "states"
    running = {"nginx": True}
    return {"conf": conf, "script": script, "states": str(states), "active": lambda name: running.get(name, False),
            "running": running}  # fmt: skip


def recorded(layer, fingerprint="f1"):
    return record(
        layer["states"], "nginx", fingerprint, [str(layer["conf"]), str(layer["script"])], ["nginx"], ["upstreams.d/*"]
    )


def test_a_recorded_layer_with_nothing_changed_is_converged(layer):
    assert recorded(layer) is True
    assert recorded(layer) is False  # the same state again: no change
    assert check(layer["states"], {"nginx": "f1"}, layer["active"]) == (["nginx"], {})
    state = read_state(layer["states"], "nginx")
    assert state["services"] == ["nginx"] and oct(os.stat(layer["states"] + "/nginx.json").st_mode & 0o777) == "0o600"


def test_excluded_files_may_change(layer):
    recorded(layer)
    (layer["conf"] / "upstreams.d" / "app.conf").write_text("upstream app { server 10.0.0.9:8080; }\n")
    assert check(layer["states"], {"nginx": "f1"}, layer["active"])[0] == ["nginx"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda layer: (layer["conf"] / "nginx.conf").write_text("worker_processes 1;\n"), "etc-nginx changed"),
        (lambda layer: (layer["conf"] / "sites.d" / "app.conf").unlink(), "etc-nginx changed"),
        (lambda layer: (layer["conf"] / "sites.d" / "new.conf").write_text("x"), "etc-nginx changed"),
        (lambda layer: os.chmod(layer["conf"] / "nginx.conf", 0o600), "etc-nginx changed"),
        (lambda layer: layer["script"].unlink(), "switch changed"),
        (lambda layer: layer["running"].update(nginx=False), "service nginx is not running"),
    ],
)
def test_drift_on_the_host_makes_the_layer_stale(layer, change, reason):
    recorded(layer)
    change(layer)
    converged, stale = check(layer["states"], {"nginx": "f1"}, layer["active"])
    assert converged == [] and reason in stale["nginx"]


def test_a_new_fingerprint_or_no_record_makes_the_layer_stale(layer):
    recorded(layer)
    converged, stale = check(layer["states"], {"nginx": "f2", "docker": "d1"}, layer["active"])
    assert converged == []
    assert stale == {
        "nginx": "its role, its variables or the collection changed",
        "docker": "never recorded on this host",
    }


def test_a_broken_state_file_means_converge_not_an_error(layer):
    os.makedirs(layer["states"])
    with open(layer["states"] + "/nginx.json", "w") as handle:
        handle.write("{not json")
    assert check(layer["states"], {"nginx": "f1"}, layer["active"])[1] == {"nginx": "never recorded on this host"}
    with open(layer["states"] + "/nginx.json", "w") as handle:
        json.dump({"format": 99}, handle)
    assert read_state(layer["states"], "nginx") is None


def test_layer_names_are_checked(layer):
    with pytest.raises(LayerStateError, match="not a valid layer name"):
        record(layer["states"], "../etc", "f", [], [])


def test_path_digest_of_missing_files_links_and_big_files(tmp_path):
    assert path_digest(str(tmp_path / "none")) == "missing"
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (1024 * 1024 + 1))
    assert path_digest(str(big)).startswith("big:")
    (tmp_path / "link").symlink_to("big")
    assert path_digest(str(tmp_path / "link")) == "link:big"


def test_check_mode_record_tells_without_writing(layer):
    assert record(layer["states"], "nginx", "f1", [], [], write=False) is True
    assert not os.path.exists(layer["states"])


def test_directories_are_checked_for_owner_and_mode_not_content(tmp_path):
    """A project directory whose content changes with each release: only the directory itself is the layer's."""
    project = tmp_path / "app"
    project.mkdir(mode=0o700)
    os.chmod(project, 0o700)
    states = str(tmp_path / "states")

    def always(name):
        return bool(name)

    assert record(states, "compose_app_shop", "f1", [], [], directories=[str(project)]) is True
    (project / "docker-compose.yml").write_text("services: {}\n")  # a release's files
    assert check(states, {"compose_app_shop": "f1"}, always) == (["compose_app_shop"], {})
    os.chmod(project, 0o755)  # noqa: S103 (the drift the check must see)
    assert "app changed on the host" in check(states, {"compose_app_shop": "f1"}, always)[1]["compose_app_shop"]
    os.chmod(project, 0o700)
    os.rename(project, tmp_path / "moved")
    assert "app changed on the host" in check(states, {"compose_app_shop": "f1"}, always)[1]["compose_app_shop"]
    (tmp_path / "moved").rename(project)
    assert check(states, {"compose_app_shop": "f1"}, always)[0] == ["compose_app_shop"]
