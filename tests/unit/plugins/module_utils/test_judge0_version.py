import pytest
from ansible_collections.ec2ops.stack.plugins.filter.judge0_version_gate import judge0_version_gate
from ansible_collections.ec2ops.stack.plugins.module_utils._judge0_version import (
    CVES,
    gate,
    image_tag,
    running_verdict,
    strict_version,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.13.1", (1, 13, 1)), ("v1.13.1", (1, 13, 1)), (" 2.0.0 ", (2, 0, 0)), ("1.13", None), ("1.13.0-extra", None),
     ("latest", None), ("", None), (None, None), ("1.13.1.2", None), ("V1.13.1", None)],
)  # fmt: skip
def test_strict_version(text, version):
    assert strict_version(text) == version


@pytest.mark.parametrize(
    ("image", "tag"),
    [("judge0/judge0:1.13.1", "1.13.1"), ("registry:5000/judge0/judge0:1.13.1", "1.13.1"),
     ("registry:5000/judge0/judge0", ""), (f"judge0/judge0@{DIGEST}", ""),
     (f"judge0/judge0:1.13.1@{DIGEST}", "1.13.1")],
)  # fmt: skip
def test_image_tag(image, tag):
    assert image_tag(image) == tag


# Issue 15: every one of these passed the old gate.
@pytest.mark.parametrize(
    ("image", "version", "verdict"),
    [
        ("", "1.13.0-extra", "invalid"),  # free text in the AWX survey compared greater than 1.13.0
        ("judge0/judge0:1.13.0-extra", "1.13.1", "unknown"),
        ("judge0/judge0:v1.13.0", "1.13.1", "vulnerable"),
        ("judge0/judge0:1.13", "1.13.1", "unknown"),
        ("judge0/judge0:latest", "1.13.1", "unknown"),
        (f"judge0/judge0@{DIGEST}", "1.13.1", "unknown"),
        ("judge0/judge0:custom-build", "1.13.1", "unknown"),
        ("", "1.13.0", "vulnerable"),
        ("", "1.12.9", "vulnerable"),
        ("judge0/judge0:1.13.0", "1.13.1", "vulnerable"),  # the image's tag wins: it is what runs
    ],
)
def test_every_bypass_is_refused_naming_the_cves_and_the_override(image, version, verdict):
    result = gate(image, version)
    assert (result["verdict"], result["allowed"]) == (verdict, False)
    assert all(cve in result["message"] for cve in CVES)
    if verdict == "invalid":
        assert "judge0_version" in result["message"] and "x.y.z" in result["message"]
    else:
        override = "judge0_allow_vulnerable_version" if verdict == "vulnerable" else "judge0_allow_unknown_version"
        assert override in result["message"]


def test_the_overrides_are_separate():
    assert gate("judge0/judge0:latest", "1.13.1", allow_vulnerable=True)["allowed"] is False
    assert gate("judge0/judge0:latest", "1.13.1", allow_unknown=True)["allowed"] is True
    assert gate("judge0/judge0:1.13.0", "1.13.1", allow_unknown=True)["allowed"] is False
    assert gate("judge0/judge0:1.13.0", "1.13.1", allow_vulnerable=True)["allowed"] is True
    # No override makes free text a version.
    assert gate("", "1.13.0-extra", allow_vulnerable=True, allow_unknown=True)["allowed"] is False


@pytest.mark.parametrize(
    ("image", "version", "expected"),
    [("", "1.13.1", "1.13.1"), ("", "v1.14.0", "1.14.0"), ("judge0/judge0:1.13.1", "1.13.0-extra", "1.13.1"),
     (f"r:5000/judge0/judge0:v1.13.1@{DIGEST}", "", "1.13.1")],
)  # fmt: skip
def test_fixed_versions_pass(image, version, expected):
    assert gate(image, version) == {
        "version": expected,
        "source": f"judge0_image {image}" if image else f"judge0_version {version}",
        "verdict": "ok",
        "allowed": True,
        "message": "",
    }


@pytest.mark.parametrize(
    ("about", "verdict"),
    [({"version": "1.13.1", "homepage": "https://judge0.com"}, "ok"), ({"version": "1.13.0"}, "vulnerable"),
     ({"version": "v1.12.0"}, "vulnerable"), ({"version": "1.13.0-extra"}, "unknown"), ({}, "unknown"),
     ("not json", "unknown")],
)  # fmt: skip
def test_the_running_server_is_judged_by_what_it_reports(about, verdict):
    result = running_verdict(about)
    assert result["verdict"] == verdict and result["allowed"] is (verdict == "ok")
    if verdict == "vulnerable":
        assert "not what its tag says" in result["message"] and all(cve in result["message"] for cve in CVES)


def test_the_filter_passes_its_options_through():
    assert judge0_version_gate("judge0/judge0:latest", version="1.13.1", allow_unknown=True)["allowed"] is True
    assert judge0_version_gate("", version="1.13.1", about={"version": "1.13.0"})["verdict"] == "vulnerable"
    assert judge0_version_gate(None, version="1.13.1")["verdict"] == "ok"
