# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Judge0 version an image runs, and whether the judge0 role may deploy it.

This is a private module_utils (leading underscore): no stable API.

Judge0 1.13.0 and older have sandbox escapes to the host (CVE-2024-28185, CVE-2024-28189,
CVE-2024-29021). A version is only known when it is written strictly, ``x.y.z`` with an
optional leading ``v``: ``1.13.0-extra``, ``1.13``, ``latest``, a custom tag or a bare digest
say nothing reliable about what runs, so they are *unknown*, refused unless the user says
so (``judge0_allow_unknown_version``), and the version the running server reports
(``/about``) is checked after the deploy either way.
"""

import re

VULNERABLE_MAX = (1, 13, 0)
CVES = ("CVE-2024-28185", "CVE-2024-28189", "CVE-2024-29021")
_STRICT = re.compile(r"v?(\d{1,4})\.(\d{1,4})\.(\d{1,4})\Z")


def strict_version(text):
    """``(x, y, z)`` for ``x.y.z`` or ``vx.y.z`` exactly, else None."""
    match = _STRICT.match(str(text).strip()) if text is not None else None
    return tuple(int(part) for part in match.groups()) if match else None


def image_tag(image):
    """The tag of an image reference (``''`` when it has none); a digest is not a tag."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]  # a registry's port is before a slash, a tag after the last one
    return last.split(":", 1)[1] if ":" in last else ""


def dotted(version):
    return ".".join(str(part) for part in version)


def gate(image, version, allow_vulnerable=False, allow_unknown=False):
    """What the role does about ``image`` (``judge0_image``, may be empty) and ``version`` (``judge0_version``).

    Returns a dict: ``version`` (``x.y.z`` or None when unknown), ``source`` (where it came from),
    ``verdict`` (``ok``, ``vulnerable``, ``unknown`` or ``invalid``), ``allowed`` (bool) and ``message``
    (why, with the fix, for anything but a plain ok).
    """
    floor = dotted(VULNERABLE_MAX)
    override = "judge0_allow_vulnerable_version=true (an isolated lab, never with untrusted code)"
    if image:
        tag = image_tag(image)
        known = strict_version(tag)
        source = f"judge0_image {image}"
        if known is None:
            why = "is pinned by digest only" if "@" in image and not tag else f"has the tag {tag or '(none)'!r}"
            return _verdict(
                None,
                source,
                "unknown",
                allow_unknown,
                f"judge0: {source} {why}, which is not a version (x.y.z): what it runs cannot be checked against "
                f"the sandbox escapes of Judge0 {floor} and older ({', '.join(CVES)}). Tag the image with its "
                "Judge0 version (e.g. 1.13.1), or set judge0_allow_unknown_version=true: the version the server "
                "reports on /about is still checked after the deploy.",
            )
    else:
        known = strict_version(version)
        source = f"judge0_version {version}"
        if known is None:
            return _verdict(
                None,
                source,
                "invalid",
                False,
                f"judge0: judge0_version {str(version)!r} is not a version: write it as x.y.z (e.g. 1.13.1; a "
                f"leading v is allowed), so that it can be checked against the sandbox escapes of Judge0 {floor} "
                f"and older ({', '.join(CVES)}). No override accepts free text here.",
            )
    if known <= VULNERABLE_MAX:
        return _verdict(
            known,
            source,
            "vulnerable",
            allow_vulnerable,
            f"judge0: {source} is Judge0 {dotted(known)}, {floor} or older, which has sandbox escapes to the host "
            f"({', '.join(CVES)}, CVSS 9.1-10). Use 1.13.1 or later. To run it anyway, set {override}.",
        )
    return _verdict(known, source, "ok", True, "")


def running_verdict(about, allow_vulnerable=False, allow_unknown=False):
    """The verdict on what a deployed server reports on ``/about`` (its JSON, a dict): ok, vulnerable or unknown."""
    reported = about.get("version") if isinstance(about, dict) else None
    known = strict_version(reported)
    floor = dotted(VULNERABLE_MAX)
    if known is None:
        return _verdict(
            None,
            "/about",
            "unknown",
            allow_unknown,
            f"judge0: the deployed server reports version {reported!r} on /about, which is not x.y.z: it cannot be "
            f"shown to be newer than {floor} ({', '.join(CVES)}).",
        )
    if known <= VULNERABLE_MAX:
        return _verdict(
            known,
            "/about",
            "vulnerable",
            allow_vulnerable,
            f"judge0: the deployed server reports Judge0 {dotted(known)} on /about, {floor} or older, which has "
            f"sandbox escapes to the host ({', '.join(CVES)}): the image is not what its tag says. Deploy a "
            "1.13.1 or later image, or set judge0_allow_vulnerable_version=true for an isolated lab.",
        )
    return _verdict(known, "/about", "ok", True, "")


def _verdict(version, source, verdict, allowed, message):
    return {
        "version": dotted(version) if version else None,
        "source": source,
        "verdict": verdict,
        "allowed": bool(allowed),
        "message": message,
    }
