"""Issue 20: a bad-input corpus for compose_deploy. Every hostile or malformed value a user types is refused
before any change, with a message naming the option, and the project is left exactly as it was."""

import hashlib
import os

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_deployer import DeployError
from ansible_collections.ec2ops.stack.tests.unit.plugins.module_utils.test_compose_deployer import App

HOSTILE_IDS = ["v 2", "v2\nv3", "v2;rm -rf /", "../v2", "v2/..", ".v2", "-v2", "v2$(id)", "v2`id`", "x" * 129]
# (An empty release is not in it: it means "derive the id from the images", the documented default.)

CORPUS = [
    *[("release", value, {"release": value}) for value in HOSTILE_IDS],
    ("project_name", "App", {"project_name": "App"}),
    ("project_name", "app;x", {"project_name": "app;x"}),
    ("project_name", "../app", {"project_name": "../app"}),
    ("images", "api;x", {"images": {"api;x": "reg/api:v2", "worker": "reg/worker:v2"}}),
    ("images", "reg/api:v2 --privileged", {"images": {"api": "reg/api:v2 --privileged", "worker": "reg/worker:v2"}}),
    ("images", "reg/api:v2\n", {"images": {"api": "reg/api:v2\n", "worker": "reg/worker:v2"}}),
    ("images", "-reg/api", {"images": {"api": "-reg/api", "worker": "reg/worker:v2"}}),
    ("images", "", {"images": {"api": "", "worker": "reg/worker:v2"}}),
    ("services", "api x", {"services": {"api x": {}}}),
    ("services", "../api", {"services": {"../api": {}}}),
    ("files", "../../etc/passwd", {"files": ["../../etc/passwd"]}),
    ("files", "/etc/passwd", {"files": ["/etc/passwd"]}),
    ("files", "compose.yml\n", {"files": ["compose.yml\n"]}),
    ("env_files", "../secrets.env", {"env_files": ["../secrets.env"]}),
    ("env_files", "/root/.env", {"env_files": ["/root/.env"]}),
    ("profiles", "a b", {"profiles": ["a b"]}),
    ("wait_timeout", "0", {"wait_timeout": 0}),
    ("keep_releases", "0", {"keep_releases": 0}),
    ("verify_seconds", "-1", {"verify_seconds": -1}),
    ("services", "strategy", {"services": {"api": {"strategy": "blue-green"}}}),
    ("services", "port", {"services": {"api": {"strategy": "rolling", "nginx_upstream": "app_api", "port": 70000}}}),
    ("services", "nginx_upstream", {"services": {"api": {"strategy": "rolling", "nginx_upstream": "a;b", "port": 80}}}),
    ("services", "health.url", {"services": {"api": {"health": {"url": "file:///etc/shadow"}}}}),
]


def tree(path):
    """Every file under ``path`` (names and contents), to compare before and after."""
    digest = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                digest[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


@pytest.fixture
def deployed(tmp_path):
    app = App(tmp_path)
    app.run("v1")
    return app


@pytest.mark.parametrize(("option", "value", "change"), CORPUS, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CORPUS])
def test_bad_input_is_refused_before_any_change_naming_the_option(deployed, option, value, change):
    before = tree(deployed.dir)
    running = [c["Id"] for c in deployed.docker.running("app", "api")]
    params = dict(change)
    release = params.pop("release", "v2")
    with pytest.raises(DeployError) as caught:
        deployed.run(release, api="v2", **params)
    message = str(caught.value)
    assert option.split(".")[0] in message, message
    assert tree(deployed.dir) == before
    assert [c["Id"] for c in deployed.docker.running("app", "api")] == running


def test_the_corpus_size():
    # Reported in the closing note of issue 20; a shrinking corpus fails here.
    assert len(CORPUS) >= 33
