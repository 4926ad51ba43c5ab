# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide how to get a host onto cgroup v1 for Judge0 (pure; used by the cgroup_v1_plan filter).

This is a private module_utils (leading underscore): no stable API.

Judge0 1.13's sandbox (isolate) needs the cgroup v1 hierarchy. ``plan()`` takes what the host
reports and returns what to do:

* ``skip``     setup is off (``judge0_cgroup_setup: never``): nothing is checked or changed.
* ``persist``  the host already runs cgroup v1 (legacy or hybrid): the kernel argument is kept in
               the GRUB configuration so it stays that way; no reboot.
* ``switch``   the host runs cgroup v2: add the kernel argument, regenerate the GRUB
               configuration, reboot (when allowed) and check again.
* ``fail``     the host cannot be brought to v1 safely; ``message`` says why and which variable
               overrides the refusal.

``warnings`` lists what the operator should know either way (AL2023 support, untested systems).
"""

KERNEL_ARG = "systemd.unified_cgroup_hierarchy=0"
OVERRIDE_VAR = "judge0_cgroup_allow_unsupported"


def cgroup_mode(fs_type, unified_mounted=False):
    """``stat -fc %T /sys/fs/cgroup`` -> v2, hybrid, v1 or unknown."""
    fs_type = (fs_type or "").strip()
    if fs_type == "cgroup2fs":
        return "v2"
    if fs_type == "tmpfs":
        return "hybrid" if unified_mounted else "v1"
    return "unknown"


def _major(version):
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return None


def _version_tuple(version):
    parts = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def is_wsl(kernel_release):
    release = (kernel_release or "").lower()
    return "microsoft" in release or "wsl" in release


def plan(
    fs_type,
    distribution,
    distribution_version,
    kernel_release="",
    proc_cmdline="",
    unified_mounted=False,
    setup="auto",
    allow_unsupported=False,
):
    """What to do on this host; a dict with mode, action, message, warnings, kernel_arg."""
    mode = cgroup_mode(fs_type, unified_mounted)
    result = {"mode": mode, "action": "skip", "message": "", "warnings": [], "kernel_arg": KERNEL_ARG}
    if setup not in ("auto", "never"):
        raise ValueError(f"judge0_cgroup_setup must be auto or never, not {setup!r}")
    if setup == "never":
        result["message"] = f"judge0_cgroup_setup is never: cgroup mode {mode} left as it is"
        if mode == "v2":
            result["warnings"].append(
                "this host runs cgroup v2 and judge0_cgroup_setup is never: Judge0 1.13 submissions fail "
                "in its sandbox (isolate) until the host boots with cgroup v1"
            )
        return result

    distro = str(distribution or "")
    major = _major(distribution_version)
    known_bad = []
    if is_wsl(kernel_release):
        known_bad.append(f"WSL2 (kernel {kernel_release}) cannot boot with a cgroup v1 kernel command line")
    if distro == "Ubuntu" and _version_tuple(distribution_version) >= (24, 4):
        known_bad.append(
            f"Ubuntu {distribution_version} is known not to run Judge0 1.13's sandbox on cgroup v1 "
            "(use Ubuntu 22.04 or Debian 12)"
        )
    if known_bad and not allow_unsupported:
        result["action"] = "fail"
        result["message"] = (
            "judge0: this host is known not to work with Judge0's cgroup v1 setup: "
            + "; ".join(known_bad)
            + f". Use an Ubuntu 22.04 or Debian 12 AMI, or set {OVERRIDE_VAR}=true to try anyway."
        )
        return result
    result["warnings"].extend(f"{OVERRIDE_VAR} is set: {reason}" for reason in known_bad)
    if distro == "Amazon" and major == 2023:
        result["warnings"].append(
            "AWS does not support cgroup v1 on Amazon Linux 2023 (it boots, but is not a supported "
            "configuration); Ubuntu 22.04 or Debian 12 AMIs are recommended for Judge0"
        )
    elif distro not in ("Debian", "Ubuntu", "Amazon"):
        result["warnings"].append(f"{distro} {distribution_version} is not tested with this role")

    if mode == "unknown":
        result["action"] = "fail"
        result["message"] = (
            f"judge0: /sys/fs/cgroup is a {fs_type or 'missing'} filesystem, neither cgroup v1 (tmpfs) nor "
            "v2 (cgroup2fs); check the host, or set judge0_cgroup_setup=never to leave it alone."
        )
        return result
    booted_with_arg = KERNEL_ARG in (proc_cmdline or "").split()
    if mode == "v2" and booted_with_arg:
        result["action"] = "fail"
        result["message"] = (
            f"judge0: the host booted with {KERNEL_ARG} but still runs cgroup v2: its systemd or kernel "
            "ignores the setting (systemd 256 and later refuse cgroup v1 unless "
            "SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1 is on the kernel command line too: see "
            "judge0_kernel_args_extra). Rebooting again would not help."
        )
        return result
    if mode == "v2":
        result["action"] = "switch"
        result["message"] = f"cgroup v2: add {KERNEL_ARG} to the kernel command line and reboot"
    else:
        result["action"] = "persist"
        result["message"] = f"cgroup {mode} already: keep {KERNEL_ARG} on the kernel command line"
    return result
