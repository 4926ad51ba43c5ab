# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and write dotenv files exactly as Docker Compose v2 reads them.

This is a private module_utils (leading underscore): no stable API.

Compose reads a ``.env`` file in two places, with the same parser
(compose-go ``dotenv``): the project ``.env`` that feeds ``${VAR}``
interpolation, and every ``env_file:`` of a service.  Its rules, checked
against the real ``docker compose config`` (see tests/functional):

* unquoted values end at the line end and at `` #``, lose trailing
  whitespace and interpolate ``$VAR``/``${VAR}`` (``$$`` is a literal ``$``);
* single-quoted values are literal and may span lines; the only escape is
  ``\\'`` (a backslash before the closing quote escapes it, so a value cannot
  end in an odd run of backslashes);
* double-quoted values may span lines, understand ``\\n \\r \\t \\\\ \\"``
  and friends, and interpolate like unquoted values.

``encode_value`` picks, per value, the form that Compose turns back into the
very same string: single quotes when the value has no ``'``, backslash or
carriage return (literal, also readable by a shell), double quotes otherwise,
escaping only ``\\`` ``"`` ``$`` (as ``$$``), newline and carriage return.
A value that no environment variable can hold (NUL, lone surrogates) is
rejected with ``DotenvError``; nothing is ever altered silently.

No function here puts a value into an exception message.
"""

import re
import unicodedata

NAME_PATTERN = "[A-Za-z_][A-Za-z0-9_]*"
_NAME_RE = re.compile(NAME_PATTERN + r"\Z")

# Characters a value may contain and still be written literally in single quotes.
_SINGLE_QUOTE_UNSAFE = re.compile(r"['\\\r]")
# What the double-quoted form must escape: \ " $ newline and carriage return.
_DOUBLE_QUOTE_ESCAPES = {
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    ord("$"): "$$",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}

# Go's unicode.IsSpace (Python's str.isspace() also counts U+001C..U+001F).
_GO_UNICODE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# compose-go's isSpace: a space that is not a line break.
_DOTENV_SPACE = frozenset("\t\v\f\r \x85\xa0")
_EXPORT_RE = re.compile(r"export[\t\n\f\r ]+")
_ESCAPE_RE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-9]{0,3})")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}
# ${NAME}, ${NAME:-word}, ${NAME-word}, ${NAME:+word}, ${NAME+word}, ${NAME:?word}, ${NAME?word}
_BRACED_RE = re.compile(r"\{([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[-+?])([^${}]*))?\}")
_NAMED_RE = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


class DotenvError(ValueError):
    """A value cannot be written, or a dotenv text cannot be read.  Never carries a value."""


def is_valid_name(name):
    """True for a portable environment variable name: ``[A-Za-z_][A-Za-z0-9_]*``."""
    return isinstance(name, str) and _NAME_RE.match(name) is not None


def unrepresentable_reason(value):
    """Why ``value`` can never reach a process environment, or None if it can."""
    if not isinstance(value, str):
        return "is not a string"
    if "\x00" in value:
        return "contains a NUL character, which no environment variable can hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    return None


def encode_value(value):
    """The quoted form of ``value`` that Compose v2 reads back as exactly ``value``."""
    reason = unrepresentable_reason(value)
    if reason:
        raise DotenvError("the value " + reason)
    if not _SINGLE_QUOTE_UNSAFE.search(value):
        return "'" + value + "'"
    return '"' + value.translate(_DOUBLE_QUOTE_ESCAPES) + '"'


def render(variables, header=None):
    """A dotenv text: optional ``# header`` lines, then ``NAME=value`` lines sorted by name.

    ``variables`` maps names to strings.  Raises ``DotenvError`` naming the
    variable (never the value) when a name is invalid or a value cannot be written.
    """
    lines = comment_lines(header) if header else []
    for name in sorted(variables):
        if not is_valid_name(name):
            raise DotenvError(f"invalid variable name {name!r}: names must match {NAME_PATTERN}")
        try:
            encoded = encode_value(variables[name])
        except DotenvError as e:
            raise DotenvError(f"variable {name}: {e}") from None
        lines.append(f"{name}={encoded}")
    return "\n".join(lines) + "\n" if lines else ""


def comment_lines(header):
    """``header`` as ``# `` comment lines (one per line of the header)."""
    if "\x00" in header:
        raise DotenvError("the header contains a NUL character")
    return [("# " + line).rstrip() for line in re.split(r"\r\n|\r|\n", header)]


def parse(text, strict=True):
    """Read a dotenv text the way Compose v2 does; returns ``{name: value}`` in file order.

    Interpolation (``$VAR``, ``${VAR}``, ``${VAR:-default}`` ...) is resolved
    against the variables defined earlier in the same text only: the host
    environment is never consulted.  With ``strict`` (the default) a reference
    to an undefined variable without a default, a bare ``NAME`` line (which
    Compose fills from the host environment) and a nested or unsupported
    ``${...}`` expression raise ``DotenvError``; with ``strict=False`` they read
    as empty / are skipped, which is good enough to compare an existing file.
    Errors give the line number and variable name, never a value.
    """
    return _Parser(strict).parse(text)


class _Parser:
    def __init__(self, strict):
        self.strict = strict
        self.line = 1

    def parse(self, src):
        if src.startswith("\ufeff"):
            src = src[1:]
        out = {}
        while True:
            src = self._statement_start(src)
            if not src:
                return out
            src = self._statement(src, out)

    def _statement_start(self, src):
        while True:
            pos = _index_not_space(src)
            if pos < 0:
                return ""
            self.line += src.count("\n", 0, pos)
            src = src[pos:]
            if src[0] != "#":
                return src
            end = src.find("\n")
            if end < 0:
                return ""
            src = src[end:]

    def _statement(self, src, out):
        if _EXPORT_RE.match(src):
            src = _lstrip_dotenv_space(src[len("export") :])
        key, offset, inherited = self._key_end(src)
        key = key.rstrip("".join(_GO_UNICODE_SPACE))
        if " " in key:
            raise DotenvError(f"line {self.line}: a variable name cannot contain a space")
        rest = _lstrip_dotenv_space(src[offset:])
        if inherited:
            if self.strict:
                # No name in the message: a line without '=' may be a stray value.
                raise DotenvError(
                    f"line {self.line} has no '=': Compose would take that variable from the host environment"
                )
            self.line += 1
            return rest
        value, rest = self._value(rest, key, out)
        out[key] = value
        return rest

    def _key_end(self, src):
        for i, char in enumerate(src):
            if char in _DOTENV_SPACE:
                continue
            if char in "=:\n":
                return src[:i], i + 1, char == "\n"
            if char in "_.-[]" or unicodedata.category(char)[0] in "LN":
                continue
            raise DotenvError(f"line {self.line}: unexpected character in a variable name (or a line without '=')")
        # compose-go quirk: a last line without '=' is read as the value of an empty name.
        return "", 0, False

    def _value(self, src, key, out):
        if not src or src[0] not in "'\"":
            value, nl, rest = src.partition("\n")
            value = value.split(" #", 1)[0].rstrip("".join(_GO_UNICODE_SPACE))
            value = self._interpolate(value, key, out)
            self.line += 1 if nl else 0
            return value, rest
        quote = src[0]
        chars = []
        escaped = False
        start_line = self.line
        for i in range(1, len(src)):
            char = src[i]
            if char == "\n":
                self.line += 1
            if escaped:
                escaped = False
                if char != quote:
                    chars.append("\\")
                chars.append(char)
            elif char == "\\":
                escaped = True
            elif char == quote:
                value = "".join(chars)
                if quote == '"':
                    value = self._interpolate(_expand_escapes(value), key, out)
                return value, src[i + 1 :]
            else:
                chars.append(char)
        raise DotenvError(f"line {start_line}: unterminated quoted value for {key!r}")

    def _interpolate(self, value, key, out):
        if "$" not in value:
            return value
        result = []
        i = 0
        while True:
            j = value.find("$", i)
            if j < 0:
                result.append(value[i:])
                return "".join(result)
            result.append(value[i:j])
            nxt = value[j + 1 : j + 2]
            if nxt == "$":
                result.append("$")
                i = j + 2
            elif nxt == "{":
                match = _BRACED_RE.match(value, j + 1)
                if not match:
                    if self.strict:
                        raise DotenvError(
                            f"line {self.line}: {key!r} has a ${{...}} expression that is invalid, nested or not"
                            " supported; write a literal $ as $$ or single-quote the value"
                        )
                    result.append(value[j : j + 2])
                    i = j + 2
                    continue
                result.append(self._substitute(match.group(1), match.group(2), match.group(3), key, out))
                i = match.end()
            else:
                match = _NAMED_RE.match(value, j + 1)
                if not match:
                    result.append("$")
                    i = j + 1
                    continue
                result.append(self._substitute(match.group(0), None, None, key, out))
                i = match.end()

    def _substitute(self, name, op, word, key, out):
        is_set = name in out
        current = out.get(name, "")
        if op in (":-", "-"):
            use_default = not is_set or (op == ":-" and current == "")
            return word if use_default else current
        if op in (":+", "+"):
            use_word = is_set and (op == "+" or current != "")
            return word if use_word else ""
        if op in (":?", "?"):
            if not is_set or (op == ":?" and current == ""):
                raise DotenvError(f"line {self.line}: {key!r} requires variable {name!r}, which is not set")
            return current
        if not is_set and self.strict:
            raise DotenvError(
                f"line {self.line}: {key!r} refers to a variable that is not defined earlier in the same"
                " text (Compose would read it from the host environment); write a literal $ as $$ or"
                " single-quote the value"
            )
        return current


def _index_not_space(src):
    for i, char in enumerate(src):
        if char not in _GO_UNICODE_SPACE:
            return i
    return -1


def _lstrip_dotenv_space(src):
    return src.lstrip("".join(_DOTENV_SPACE))


def _expand_escapes(value):
    def replace(match):
        seq = match.group(0)
        if seq == "\\$":
            return "$$"
        if seq[1] in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[seq[1]]
        if seq[1] == "0":
            # compose-go rewrites \0NNN to \NNN and unquotes it as Go octal (exactly 3 digits, <= 0o377).
            digits = seq[2:]
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) <= 0o377:
                return chr(int(digits, 8))
            return "\\" + digits
        return seq

    return _ESCAPE_RE.sub(replace, value)
