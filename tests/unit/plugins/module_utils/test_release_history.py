import json

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._release_history import (
    HistoryError,
    ReleaseHistory,
    content_digest,
    default_release_id,
    validate_release_id,
)


def record(release, image="repo/api@sha256:" + "a" * 64, image_id="sha256:" + "1" * 64):
    return {
        "release": release,
        "snapshot": True,
        "services": {"api": {"image": "repo/api:" + release, "pinned": image, "image_id": image_id}},
    }


def attempt(history, release, result="deployed", **kw):
    """Journal an attempt and end it as ``result`` (deployed ones become current); returns its key."""
    key = history.begin(record(release, **kw))
    history.finish(key, result, make_current=result == "deployed")
    return key


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
    attempt(history, "v1")
    history.save()
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = ReleaseHistory.load(str(path))
    assert loaded.current == "v1"
    assert loaded.releases == history.releases
    assert loaded.releases[0]["attempt"] == 1 and loaded.releases[0]["key"] == "v1"
    assert json.loads(path.read_text())["format"] == 2


def test_a_format_1_history_reads_as_first_attempts(tmp_path):
    path = tmp_path / "history.json"
    old = {
        "format": 1,
        "current": "v2",
        "releases": [dict(record("v1"), result="deployed"), dict(record("v2"), result="deployed")],
    }
    path.write_text(json.dumps(old))
    history = ReleaseHistory.load(str(path))
    assert [(r["key"], r["attempt"]) for r in history.releases] == [("v1", 1), ("v2", 1)]
    assert history.current_record()["release"] == "v2"
    assert history.previous_record()["key"] == "v1"


def test_missing_history_is_empty_and_a_broken_one_is_a_clear_error(tmp_path):
    assert ReleaseHistory.load(str(tmp_path / "none.json")).releases == []
    broken = tmp_path / "history.json"
    broken.write_text("{not json")
    with pytest.raises(HistoryError, match="cannot read the release history"):
        ReleaseHistory.load(str(broken))
    broken.write_text('{"format": 99, "releases": []}')
    with pytest.raises(HistoryError, match="not a release history of format 2"):
        ReleaseHistory.load(str(broken))


def test_a_redeploy_of_the_same_id_is_a_new_attempt_and_never_replaces_the_good_one():
    history = ReleaseHistory("unused")
    assert attempt(history, "abc123") == "abc123"
    # The same sha again (say, with a badly rotated secret): its own record and directory key.
    second = history.begin(record("abc123"))
    assert second == "abc123+2"
    assert history.current_record()["key"] == "abc123" and history.current_record()["result"] == "deployed"
    history.finish(second, "failed")
    assert [(r["key"], r["result"]) for r in history.releases] == [("abc123", "deployed"), ("abc123+2", "failed")]
    assert history.resolve("abc123")["key"] == "abc123"  # the release id names its newest good attempt
    assert history.begin(record("abc123")) == "abc123+3"


def test_attempt_keys_skip_directories_already_on_disk():
    history = ReleaseHistory("unused")
    assert history.begin(record("v1"), taken=lambda key: key in ("v1", "v1+2")) == "v1+3"


def test_a_refused_attempt_is_forgotten_without_touching_others():
    history = ReleaseHistory("unused")
    attempt(history, "v1")
    key = history.begin(record("v1"))
    history.forget(key)
    assert [r["key"] for r in history.releases] == ["v1"] and history.current == "v1"


def test_failed_attempts_never_push_good_releases_out():
    history = ReleaseHistory("unused", keep=2, keep_failed=2)
    attempt(history, "v1")
    attempt(history, "v2")
    for _attempt in range(4):
        attempt(history, "v3", result="failed")
    dropped = history.prune()
    assert dropped == ["v3", "v3+2"]
    assert [(r["key"], r["result"]) for r in history.releases] == [
        ("v1", "deployed"),
        ("v2", "deployed"),
        ("v3+3", "failed"),
        ("v3+4", "failed"),
    ]
    assert history.resolve("previous")["key"] == "v1"


def test_keep_counts_good_releases_and_never_drops_the_current():
    history = ReleaseHistory("unused", keep=2)
    for release in ("v1", "v2", "v3"):
        attempt(history, release)
    assert history.prune() == ["v1"]
    # Rolled back to v2: v3 is newer but not current; keep=2 keeps the current and the newest other.
    history.current = "v2"
    attempt(history, "v4", result="interrupted")
    assert history.prune() == []
    assert history.keys() == {"v2", "v3", "v4"}
    assert history.current == "v2"


def test_in_progress_attempts_are_the_journal_and_are_never_pruned():
    history = ReleaseHistory("unused", keep=1, keep_failed=0)
    attempt(history, "v1")
    key = history.begin(record("v2"))
    assert [r["key"] for r in history.pending()] == [key]
    assert history.prune() == []
    assert history.keys() == {"v1", "v2"}


def test_previous_skips_failed_attempts():
    history = ReleaseHistory("unused")
    attempt(history, "v1")
    attempt(history, "v2", result="failed")
    attempt(history, "v3")
    assert history.previous_record()["release"] == "v1"
    assert history.resolve("previous")["release"] == "v1"


def test_resolve_names_what_is_kept():
    history = ReleaseHistory("unused")
    with pytest.raises(HistoryError, match="no previous release"):
        history.resolve("previous")
    attempt(history, "v1")
    attempt(history, "v2")
    attempt(history, "v5", result="failed")
    with pytest.raises(
        HistoryError,
        match=r"release 'v9' is not in the history as a successful deploy \(kept releases, newest first: v2, v1\)",
    ):
        history.resolve("v9")
    with pytest.raises(HistoryError, match="'v5' is not in the history as a successful deploy"):
        history.resolve("v5")
    with pytest.raises(HistoryError, match="not a valid release id"):
        history.resolve("../etc")
    assert history.resolve("v1")["release"] == "v1"


def test_retained_images_cover_kept_good_releases_not_failed_ones():
    history = ReleaseHistory("unused")
    attempt(history, "v1", image="repo/api@sha256:" + "a" * 64, image_id="sha256:" + "1" * 64)
    attempt(history, "v2", image="repo/api@sha256:" + "b" * 64, image_id="sha256:" + "2" * 64)
    attempt(history, "v3", result="failed", image="repo/api@sha256:" + "c" * 64, image_id="sha256:" + "3" * 64)
    kept = history.retained_images()
    assert {"repo/api@sha256:" + "a" * 64, "sha256:" + "1" * 64, "sha256:" + "2" * 64} <= kept
    assert "sha256:" + "3" * 64 not in kept


def test_plus_one_names_the_first_attempt_exactly(tmp_path):
    history = ReleaseHistory(str(tmp_path / "history.json"))
    for _attempt in (1, 2):
        key = history.begin({"release": "v1"})
        history.finish(key, "deployed", make_current=True)
    assert history.resolve("v1")["key"] == "v1+2"
    assert history.resolve("v1+1")["key"] == "v1"
    assert history.resolve("v1+2")["key"] == "v1+2"
