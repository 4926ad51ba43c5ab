import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._cgroup_plan import KERNEL_ARG, cgroup_mode, plan


@pytest.mark.parametrize(
    ("fs_type", "unified", "mode"),
    [("cgroup2fs\n", False, "v2"), ("tmpfs", False, "v1"), ("tmpfs", True, "hybrid"), ("", False, "unknown")],
)
def test_cgroup_mode(fs_type, unified, mode):
    assert cgroup_mode(fs_type, unified) == mode


@pytest.mark.parametrize(
    ("fs_type", "distro", "version", "action"),
    [
        ("cgroup2fs", "Debian", "12.5", "switch"),
        ("cgroup2fs", "Ubuntu", "22.04", "switch"),
        ("tmpfs", "Debian", "12", "persist"),
        ("tmpfs", "Ubuntu", "22.04", "persist"),
        ("cgroup2fs", "Ubuntu", "24.04", "fail"),
        ("cgroup2fs", "Ubuntu", "25.10", "fail"),
        ("tmpfs", "Ubuntu", "24.04", "fail"),
        ("cgroup2fs", "Amazon", "2023", "switch"),
        ("ext4", "Debian", "12", "fail"),
    ],
)
def test_action_by_mode_and_distribution(fs_type, distro, version, action):
    assert plan(fs_type, distro, version)["action"] == action


def test_known_bad_hosts_name_the_override():
    result = plan("cgroup2fs", "Ubuntu", "24.04")
    assert "Ubuntu 24.04" in result["message"] and "judge0_cgroup_allow_unsupported=true" in result["message"]
    wsl = plan("cgroup2fs", "Ubuntu", "22.04", kernel_release="5.15.153.1-microsoft-standard-WSL2")
    assert wsl["action"] == "fail" and "WSL2" in wsl["message"]


def test_the_override_goes_ahead_with_a_warning():
    result = plan("cgroup2fs", "Ubuntu", "24.04", allow_unsupported=True)
    assert result["action"] == "switch"
    assert any("judge0_cgroup_allow_unsupported is set" in w for w in result["warnings"])


def test_al2023_warns_that_aws_does_not_support_v1():
    result = plan("cgroup2fs", "Amazon", "2023")
    assert any("AWS does not support cgroup v1 on Amazon Linux 2023" in w for w in result["warnings"])
    assert any("Ubuntu 22.04 or Debian 12" in w for w in result["warnings"])
    assert plan("cgroup2fs", "Debian", "12")["warnings"] == []


def test_a_v2_host_already_booted_with_the_argument_is_not_rebooted_again():
    result = plan("cgroup2fs", "Debian", "13", proc_cmdline=f"BOOT_IMAGE=/vmlinuz root=/dev/xvda1 {KERNEL_ARG}")
    assert result["action"] == "fail" and "Rebooting again would not help" in result["message"]
    assert "SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1" in result["message"]


def test_setup_never_changes_nothing_but_warns_on_v2():
    assert plan("tmpfs", "Debian", "12", setup="never") == {
        "mode": "v1",
        "action": "skip",
        "message": "judge0_cgroup_setup is never: cgroup mode v1 left as it is",
        "warnings": [],
        "kernel_arg": KERNEL_ARG,
    }
    result = plan("cgroup2fs", "Ubuntu", "24.04", setup="never")
    assert result["action"] == "skip" and "submissions fail" in result["warnings"][0]
    with pytest.raises(ValueError, match="auto or never"):
        plan("tmpfs", "Debian", "12", setup="always")


def test_untested_distributions_warn():
    result = plan("cgroup2fs", "Rocky", "9.4")
    assert result["action"] == "switch" and "not tested" in result["warnings"][0]
