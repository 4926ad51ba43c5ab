import json

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._release_history import (
    HistoryError,
    ReleaseHistory,
    content_digest,
    default_release_id,
    validate_release_id,
)


def record(release, result="deployed", image="repo/api@sha256:" + "a" * 64, image_id="sha256:" + "1" * 64):
    return {
        "release": release,
        "result": result,
        "snapshot": True,
        "services": {"api": {"image": "repo/api:" + release, "pinned": image, "image_id": image_id}},
    }


def test_release_ids_are_checked():
    assert validate_release_id("v1.2.3") == "v1.2.3"
    assert validate_release_id("3f2a9c1") == "3f2a9c1"
    for bad in ("", "-x", "a/b", "a b", "previous", "x" * 129, None):
        with pytest.raises(HistoryError):
            validate_release_id(bad)


def test_content_digest_ignores_order_but_not_content():
    a = content_digest([("compose.yml", b"x"), (".env", b"A=1")])
    assert a == content_digest([(".env", b"A=1"), ("compose.yml", b"x")])
    assert a != content_digest([(".env", b"A=2"), ("compose.yml", b"x")])
    assert a != content_digest([("other.yml", b"x"), (".env", b"A=1")])


def test_default_release_id_is_stable_and_changes_with_inputs():
    first = default_release_id({"api": "repo/api:v1"}, "abc")
    assert first == default_release_id({"api": "repo/api:v1"}, "abc")
    assert first.startswith("r-") and len(first) == 14
    assert first != default_release_id({"api": "repo/api:v2"}, "abc")
    assert first != default_release_id({"api": "repo/api:v1"}, "abd")
    validate_release_id(first)


def test_save_load_round_trip_with_private_mode(tmp_path):
    path = tmp_path / ".ec2ops" / "history.json"
    history = ReleaseHistory(str(path))
    history.add(record("v1"))
    history.save()
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = ReleaseHistory.load(str(path))
    assert loaded.current == "v1"
    assert loaded.releases == [record("v1")]
    assert json.loads(path.read_text())["format"] == 1


def test_missing_history_is_empty_and_a_broken_one_is_a_clear_error(tmp_path):
    assert ReleaseHistory.load(str(tmp_path / "none.json")).releases == []
    broken = tmp_path / "history.json"
    broken.write_text("{not json")
    with pytest.raises(HistoryError, match="cannot read the release history"):
        ReleaseHistory.load(str(broken))
    broken.write_text('{"format": 99, "releases": []}')
    with pytest.raises(HistoryError, match="not a release history of format 1"):
        ReleaseHistory.load(str(broken))


def test_keep_trims_oldest_but_never_the_current(tmp_path):
    history = ReleaseHistory(str(tmp_path / "h.json"), keep=2)
    history.add(record("v1"))
    history.add(record("v2"))
    assert history.add(record("v3")) == ["v1"]
    assert [r["release"] for r in history.releases] == ["v2", "v3"]
    # A failed release recorded without becoming current must not push the current one out.
    history.current = "v2"
    assert history.add(record("v4", result="failed"), make_current=False) == ["v3"]
    assert [r["release"] for r in history.releases] == ["v2", "v4"]
    assert history.current == "v2"


def test_previous_skips_failed_releases():
    history = ReleaseHistory("unused")
    history.add(record("v1"))
    history.add(record("v2", result="failed"), make_current=False)
    history.add(record("v3"))
    assert history.previous_record()["release"] == "v1"
    assert history.resolve("previous")["release"] == "v1"


def test_resolve_names_what_is_kept():
    history = ReleaseHistory("unused")
    with pytest.raises(HistoryError, match="no previous release"):
        history.resolve("previous")
    history.add(record("v1"))
    history.add(record("v2"))
    with pytest.raises(
        HistoryError, match=r"release 'v9' is not in the history \(kept releases, newest first: v2, v1\)"
    ):
        history.resolve("v9")
    assert history.resolve("v1")["release"] == "v1"


def test_redeploying_a_release_moves_it_to_the_end():
    history = ReleaseHistory("unused")
    history.add(record("v1"))
    history.add(record("v2"))
    history.add(record("v1"))
    assert [r["release"] for r in history.releases] == ["v2", "v1"]


def test_retained_images_cover_every_kept_release():
    history = ReleaseHistory("unused")
    history.add(record("v1", image="repo/api@sha256:" + "a" * 64, image_id="sha256:" + "1" * 64))
    history.add(record("v2", image="repo/api@sha256:" + "b" * 64, image_id="sha256:" + "2" * 64))
    kept = history.retained_images()
    assert {"repo/api@sha256:" + "a" * 64, "sha256:" + "1" * 64, "sha256:" + "2" * 64} <= kept
