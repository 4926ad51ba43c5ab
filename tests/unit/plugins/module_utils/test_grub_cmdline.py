import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._grub_cmdline import (
    GrubCmdlineError,
    apply_args,
    edit,
    read_args,
)

ARG = "systemd.unified_cgroup_hierarchy=0"

DEBIAN_DEFAULT = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""

# Uncomment to disable graphical terminal
#GRUB_TERMINAL=console
"""


def test_adds_once_and_keeps_every_other_line():
    first = edit(DEBIAN_DEFAULT, add=[ARG])
    assert first.changed and first.before == [] and first.after == [ARG]
    assert first.text == DEBIAN_DEFAULT.replace('GRUB_CMDLINE_LINUX=""', f'GRUB_CMDLINE_LINUX="{ARG}"')
    second = edit(first.text, add=[ARG])
    assert not second.changed and second.text == first.text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('GRUB_CMDLINE_LINUX="console=ttyS0 quiet"', f'GRUB_CMDLINE_LINUX="console=ttyS0 quiet {ARG}"'),
        ("GRUB_CMDLINE_LINUX='console=ttyS0'", f"GRUB_CMDLINE_LINUX='console=ttyS0 {ARG}'"),
        ("GRUB_CMDLINE_LINUX=console=ttyS0", f'GRUB_CMDLINE_LINUX="console=ttyS0 {ARG}"'),
        ("GRUB_CMDLINE_LINUX=", f'GRUB_CMDLINE_LINUX="{ARG}"'),
        ('GRUB_CMDLINE_LINUX="a"  # keep me', f'GRUB_CMDLINE_LINUX="a {ARG}"  # keep me'),
        ('export GRUB_CMDLINE_LINUX="a"', f'export GRUB_CMDLINE_LINUX="a {ARG}"'),
        ('  GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX a"', f'  GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX a {ARG}"'),
        # An existing value for the same key is replaced in place, duplicates collapse.
        ('GRUB_CMDLINE_LINUX="systemd.unified_cgroup_hierarchy=1 x"', f'GRUB_CMDLINE_LINUX="{ARG} x"'),
        (f'GRUB_CMDLINE_LINUX="{ARG} x {ARG}"', f'GRUB_CMDLINE_LINUX="{ARG} x"'),
    ],
)
def test_quoting_and_trailing_text_are_kept(line, expected):
    result = edit(f"A=1\n{line}\nB=2\n", add=[ARG])
    assert result.changed
    assert result.text == f"A=1\n{expected}\nB=2\n"
    assert not edit(result.text, add=[ARG]).changed


def test_edits_the_last_assignment_only_and_ignores_comments():
    text = '#GRUB_CMDLINE_LINUX="commented"\nGRUB_CMDLINE_LINUX="first"\nGRUB_CMDLINE_LINUX="last"\n'
    result = edit(text, add=[ARG])
    assert result.before == ["last"]
    assert result.text == (
        f'#GRUB_CMDLINE_LINUX="commented"\nGRUB_CMDLINE_LINUX="first"\nGRUB_CMDLINE_LINUX="last {ARG}"\n'
    )
    assert read_args(result.text) == ["last", ARG]


def test_a_missing_assignment_is_appended_and_other_variables_are_separate():
    result = edit('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', add=[ARG])
    assert result.text == f'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX="{ARG}"\n'
    assert not edit(result.text, add=[ARG]).changed
    assert edit("", add=[ARG]).text == f'GRUB_CMDLINE_LINUX="{ARG}"\n'
    assert not edit("", remove=[ARG]).changed


def test_remove_by_key_or_exact_value():
    text = f'GRUB_CMDLINE_LINUX="quiet {ARG} console=ttyS0"\n'
    assert edit(text, remove=["systemd.unified_cgroup_hierarchy"]).after == ["quiet", "console=ttyS0"]
    assert edit(text, remove=[ARG]).after == ["quiet", "console=ttyS0"]
    assert not edit(text, remove=["systemd.unified_cgroup_hierarchy=1"]).changed
    assert not edit(text, remove=["absent"]).changed


def test_no_final_newline_is_kept():
    assert edit('GRUB_CMDLINE_LINUX=""', add=["a"]).text == 'GRUB_CMDLINE_LINUX="a"'


@pytest.mark.parametrize("bad", ["a b", 'x="y"', "$(reboot)", "`id`", "a;b", "", "=x", "a'b"])
def test_unsafe_arguments_are_refused(bad):
    with pytest.raises(GrubCmdlineError, match="not supported"):
        edit(DEBIAN_DEFAULT, add=[bad])


def test_an_unclosed_quote_is_refused_not_guessed():
    with pytest.raises(GrubCmdlineError, match="not closed"):
        edit('GRUB_CMDLINE_LINUX="a\n b"\n', add=[ARG])


def test_escaped_quote_does_not_end_the_value():
    result = edit('GRUB_CMDLINE_LINUX="a\\"b"\n', add=["c"])
    assert result.text == 'GRUB_CMDLINE_LINUX="a\\"b c"\n'


def test_apply_args_bare_key_and_order():
    assert apply_args(["a", "b"], add=["c", "a"]) == ["a", "b", "c"]
    assert apply_args(["k=1", "x", "k=2"], add=["k=3"]) == ["k=3", "x"]


def test_bad_variable_name():
    with pytest.raises(GrubCmdlineError, match="not a shell variable"):
        edit("", add=["a"], variable="GRUB-X")


def test_only_the_assignment_changes_byte_for_byte():
    """Issue 20: CRLF, a form feed or U+2028 elsewhere in the file survive an edit unchanged."""
    text = (
        "# Windows-edited\r\nGRUB_TIMEOUT=5\r\n"
        "# a form feed \f and a line separator \u2028 in comments\n"
        'GRUB_CMDLINE_LINUX="quiet"\r\n'
        "GRUB_DISABLE_RECOVERY=true"
    )
    result = edit(text, add=["systemd.unified_cgroup_hierarchy=0"])
    expected = text.replace('"quiet"\r\n', '"quiet systemd.unified_cgroup_hierarchy=0"\r\n')
    assert result.changed and result.text == expected


def test_an_append_to_the_variable_is_refused_not_ignored():
    text = 'GRUB_CMDLINE_LINUX="quiet"\nGRUB_CMDLINE_LINUX+=" nomodeset"\n'
    with pytest.raises(GrubCmdlineError, match=r"line 2 appends to GRUB_CMDLINE_LINUX \(\+=\)"):
        edit(text, add=["systemd.unified_cgroup_hierarchy=0"])
    with pytest.raises(GrubCmdlineError, match=r"\+="):
        read_args(text)
    # A commented one is not an assignment.
    assert edit('GRUB_CMDLINE_LINUX=""\n# GRUB_CMDLINE_LINUX+=" x"\n', add=["a=1"]).changed
