import json

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._compose_cli import Docker, DockerError


def fake_run(rc, out, err):
    calls = []

    def run(argv):
        calls.append(argv)
        return rc, out, err

    run.calls = calls
    return run


def test_inspect_returns_every_container():
    run = fake_run(0, json.dumps([{"Id": "a"}, {"Id": "b"}]), "")
    assert [c["Id"] for c in Docker(run).inspect_containers(["a", "b"])] == ["a", "b"]
    assert run.calls == [["docker", "inspect", "a", "b"]]


def test_inspect_leaves_out_a_container_removed_since_it_was_listed():
    # What docker prints when one of the listed containers was removed by a background stop.
    run = fake_run(1, json.dumps([{"Id": "a"}]), "Error: No such object: b\n")
    assert [c["Id"] for c in Docker(run).inspect_containers(["a", "b"])] == ["a"]


def test_inspect_of_only_removed_containers_is_empty():
    run = fake_run(1, "[]", "Error: No such object: a\nError: No such object: b\n")
    assert Docker(run).inspect_containers(["a", "b"]) == []


@pytest.mark.parametrize(
    "err",
    [
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
        "Error: No such object: b\npermission denied while trying to connect to the Docker daemon socket\n",
        "",
    ],
)
def test_inspect_still_fails_on_other_errors(err):
    with pytest.raises(DockerError, match=r"docker inspect failed \(exit 1\)"):
        Docker(fake_run(1, "[]", err)).inspect_containers(["a", "b"])


def test_inspect_of_nothing_runs_nothing():
    run = fake_run(0, "", "")
    assert Docker(run).inspect_containers([]) == []
    assert run.calls == []


def test_remove_accepts_containers_gone_or_being_removed_by_a_background_stop():
    err = (
        "Error response from daemon: removal of container 57f8864dfec4 is already in progress\n"
        "Error response from daemon: No such container: af1545dfeb87\n"
    )
    run = fake_run(1, "", err)
    Docker(run).remove(["57f8864dfec4", "af1545dfeb87"])
    assert run.calls == [["docker", "rm", "-f", "57f8864dfec4", "af1545dfeb87"]]
    with pytest.raises(DockerError, match=r"docker rm failed \(exit 1\)"):
        Docker(fake_run(1, "", "Error response from daemon: permission denied\n")).remove(["a"])
