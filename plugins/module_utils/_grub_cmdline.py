# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Add and remove kernel arguments in GRUB_CMDLINE_LINUX of /etc/default/grub (pure text editing).

This is a private module_utils (leading underscore): no stable API.

``/etc/default/grub`` is a shell fragment that ``update-grub`` / ``grub2-mkconfig`` source. Only
the last uncommented assignment of the variable counts (the shell's rule), so that is the one
edited; every other line, comment and the assignment's quoting and trailing comment stay as they
were, byte for byte: lines are split on "\n" only, so CRLF endings, form feeds or U+2028 in
comments survive (the assignment's own line keeps its "\r"). Nothing is rewritten when the
arguments are already as asked (idempotent), and when a change is needed only the value's
argument list is rewritten (single spaces between arguments). An append to the variable
(``GRUB_CMDLINE_LINUX+=...``) is refused: editing the assignment alone would leave the append
in force while saying the arguments are as asked.

Argument rules (``add``): ``key=value`` replaces any ``key`` / ``key=other`` (all occurrences
collapse into one, at the first one's place); a bare ``key`` is added when missing. ``remove``:
``key`` removes ``key`` and every ``key=...``; ``key=value`` removes that exact argument.
"""

import re

_ASSIGNMENT_RE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<rest>.*)$")
# Characters a kernel argument may have here: no shell quoting or expansion is needed for them
# inside double or single quotes.
_SAFE_ARG_RE = re.compile(r"^[A-Za-z0-9_.,:/=+@%~^-]+$")
_APPEND_RE = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\+=")


class GrubCmdlineError(ValueError):
    """The file or an argument cannot be edited safely; the message says why."""


def check_arg(arg):
    if not isinstance(arg, str) or not _SAFE_ARG_RE.match(arg) or arg.startswith("="):
        raise GrubCmdlineError(
            f"kernel argument {arg!r} is not supported: use letters, digits and _.,:/=+@%~^- only "
            "(no spaces, quotes or shell characters)"
        )


def _key(arg):
    return arg.split("=", 1)[0]


def apply_args(tokens, add=(), remove=()):
    """The argument list ``tokens`` with ``add`` and ``remove`` applied (see the module docstring)."""
    result = list(tokens)
    for arg in remove:
        check_arg(arg)
        if "=" in arg:
            result = [t for t in result if t != arg]
        else:
            result = [t for t in result if _key(t) != arg]
    for arg in add:
        check_arg(arg)
        key = _key(arg)
        same_key = [i for i, t in enumerate(result) if _key(t) == key]
        if not same_key:
            result.append(arg)
            continue
        if len(same_key) == 1 and result[same_key[0]] == arg:
            continue
        first = same_key[0]
        result = [t for i, t in enumerate(result) if i not in same_key[1:]]
        result[first] = arg
    return result


def _split_value(rest, lineno):
    """``rest`` (what follows ``NAME=``) -> ``(quote, inner, suffix)``."""
    if rest[:1] in ('"', "'"):
        quote = rest[0]
        end = rest.find(quote, 1)
        # A double quote escaped with a backslash does not end the string.
        while quote == '"' and end != -1 and rest[end - 1] == "\\":
            end = rest.find(quote, end + 1)
        if end == -1:
            raise GrubCmdlineError(
                f"line {lineno}: the value's quote is not closed on the same line; edit this assignment by hand"
            )
        return quote, rest[1:end], rest[end + 1 :]
    match = re.match(r"^(?P<inner>[^\s#;]*)(?P<suffix>.*)$", rest)
    return "", match.group("inner"), match.group("suffix")


def _lines(text):
    """The file's lines split on "\n" only, each without its "\r" (CRLF), and which had one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines], [line.endswith("\r") for line in lines]


def find_assignment(lines, variable):
    """Index of the last uncommented ``variable=`` line, or None; an append (``variable+=``) is refused."""
    found = None
    for index, line in enumerate(lines):
        append = _APPEND_RE.match(line)
        if append and append.group("name") == variable:
            raise GrubCmdlineError(
                f"line {index + 1} appends to {variable} (+=), which this module does not edit: merge it into "
                f"the {variable}= assignment by hand, then run again"
            )
        match = _ASSIGNMENT_RE.match(line)
        if match and match.group("name") == variable:
            found = index
    return found


def read_args(text, variable="GRUB_CMDLINE_LINUX"):
    """The arguments the last assignment of ``variable`` sets (``[]`` when there is none)."""
    lines = _lines(text)[0]
    index = find_assignment(lines, variable)
    if index is None:
        return []
    _quote, inner, _suffix = _split_value(_ASSIGNMENT_RE.match(lines[index]).group("rest"), index + 1)
    return inner.split()


class EditResult:
    def __init__(self, text, changed, before, after):
        self.text = text
        self.changed = changed
        self.before = before
        self.after = after


def edit(text, add=(), remove=(), variable="GRUB_CMDLINE_LINUX"):
    """Apply ``add``/``remove`` to ``variable`` in the file text ``text``: an EditResult."""
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", variable or ""):
        raise GrubCmdlineError(f"{variable!r} is not a shell variable name")
    lines, crlf = _lines(text)
    index = find_assignment(lines, variable)
    if index is None:
        after = apply_args([], add, remove)
        if not after:
            return EditResult(text, False, [], [])
        separator = "" if text == "" or text.endswith("\n") else "\n"
        return EditResult(f'{text}{separator}{variable}="{" ".join(after)}"\n', True, [], after)
    match = _ASSIGNMENT_RE.match(lines[index])
    quote, inner, suffix = _split_value(match.group("rest"), index + 1)
    before = inner.split()
    after = apply_args(before, add, remove)
    if after == before:
        return EditResult(text, False, before, after)
    quote = quote or '"'
    line = f"{match.group('lead')}{variable}={quote}{' '.join(after)}{quote}{suffix}" + ("\r" if crlf[index] else "")
    # Only that line's bytes change: the text before and after it is kept as it was.
    raw = text.split("\n")
    raw[index] = line
    return EditResult("\n".join(raw), True, before, after)
