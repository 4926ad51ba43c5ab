"""Unit tests for the dotenv encoder and parser (no Compose needed; tests/functional checks them against Compose)."""

import random

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import (
    DotenvError,
    comment_lines,
    encode_value,
    is_valid_name,
    parse,
    render,
    unrepresentable_reason,
)

# (value, encoded form).  The encoded forms were checked with `docker compose config` (tests/functional).
ENCODED = [
    ("plain", "'plain'"),
    ("", "''"),
    ("a b#c=d", "'a b#c=d'"),
    ("$x ${y} $$ $", "'$x ${y} $$ $'"),
    ("-----BEGIN KEY-----\nabc\n-----END KEY-----\n", "'-----BEGIN KEY-----\nabc\n-----END KEY-----\n'"),
    ("\ttab\t", "'\ttab\t'"),
    ("  lead and trail  ", "'  lead and trail  '"),
    ("ünï ☃ 𝄞", "'ünï ☃ 𝄞'"),
    ('say "hi"', "'say \"hi\"'"),
    ("it's", '"it\'s"'),
    ("it's $HOME", '"it\'s $$HOME"'),
    ("back\\slash", '"back\\\\slash"'),
    ("ends with \\", '"ends with \\\\"'),
    ("\\'", '"\\\\\'"'),
    ('\\"', '"\\\\\\""'),
    ("cr\r\nlf", '"cr\\r\\nlf"'),
    ("'\n'", "\"'\\n'\""),
    ("\\$A", '"\\\\$$A"'),
]


@pytest.mark.parametrize(("value", "encoded"), ENCODED)
def test_encode_value(value, encoded):
    assert encode_value(value) == encoded


@pytest.mark.parametrize(("value", "_encoded"), ENCODED)
def test_encoded_value_parses_back(value, _encoded):
    assert parse(render({"V": value})) == {"V": value}


@pytest.mark.parametrize(
    ("value", "reason"),
    [("a\x00b", "NUL"), ("\ud800", "surrogate"), (b"bytes", "not a string"), (None, "not a string")],
)
def test_unrepresentable_values_are_rejected(value, reason):
    assert reason in unrepresentable_reason(value)
    with pytest.raises(DotenvError) as e:
        encode_value(value)
    assert reason in str(e.value)


def test_error_never_contains_the_value():
    secret = "hunter2-\x00-topsecret"
    with pytest.raises(DotenvError) as e:
        render({"PASSWORD": secret})
    assert "PASSWORD" in str(e.value)
    assert "hunter2" not in str(e.value)
    assert "topsecret" not in str(e.value)


@pytest.mark.parametrize("name", ["A", "_", "a_b", "A1", "_9", "DB_PASSWORD"])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A.B", "A B", "É", "A=", "A\n", None, 1])
def test_invalid_names(name):
    assert not is_valid_name(name)


def test_render_sorts_names_and_writes_the_header():
    text = render({"B": "2", "A": "1"}, header="Managed by Ansible\n\nDo not edit")
    assert text == "# Managed by Ansible\n#\n# Do not edit\nA='1'\nB='2'\n"


def test_render_empty():
    assert render({}) == ""
    assert render({}, header="h") == "# h\n"


def test_render_rejects_invalid_names_without_value():
    with pytest.raises(DotenvError, match="invalid variable name 'A-B'"):
        render({"A-B": "secret-value"})


def test_comment_lines():
    assert comment_lines("a\r\nb\rc\n d ") == ["# a", "# b", "# c", "#  d"]
    with pytest.raises(DotenvError):
        comment_lines("a\x00")


# Parser: Compose's rules, as observed with `docker compose config` (tests/functional compares them live).
PARSED = [
    ("A=1", {"A": "1"}),
    ("A=1\nB=2\n", {"A": "1", "B": "2"}),
    ("# comment\n\n  # indented\nA=1", {"A": "1"}),
    ("export A=1", {"A": "1"}),
    ("exportA=1", {"exportA": "1"}),
    ("A: yaml style", {"A": "yaml style"}),
    ("A =  spaced  ", {"A": "spaced"}),
    ("A=a#b", {"A": "a#b"}),
    ("A=a #b", {"A": "a"}),
    ("A= #b", {"A": "#b"}),
    ("A=x\\ny", {"A": "x\\ny"}),
    ("A='q'  # c", {"A": "q"}),
    ("A='multi\nline'", {"A": "multi\nline"}),
    ("A='x\\'y'", {"A": "x'y"}),
    ("A='x\\\\'", {"A": "x\\\\"}),
    ("A='$B ${C}'", {"A": "$B ${C}"}),
    ('A="a\\nb\\tc\\\\d\\"e"', {"A": 'a\nb\tc\\d"e'}),
    ('A="\\a\\b\\f\\v\\r"', {"A": "\a\b\f\v\r"}),
    ('A="\\0101\\0\\01\\0777\\08"', {"A": "A\\\\1\\777\\8"}),
    ('A="\\q\\c\\x41"', {"A": "\\q\\c\\x41"}),
    ('A="$$"', {"A": "$"}),
    ('A="\\$B"', {"A": "$B"}),
    ("A=$$x", {"A": "$x"}),
    ("A=a$ b", {"A": "a$ b"}),
    ("A=a$", {"A": "a$"}),
    ("A=$1", {"A": "$1"}),
    ("A=1\nB=$A.y\nC=${A}z", {"A": "1", "B": "1.y", "C": "1z"}),
    ("A=1\nE=\nB=${A:-d}|${N:-d}|${E:-d}|${E-d}|${N-d}", {"A": "1", "E": "", "B": "1|d|d||d"}),
    ("A=1\nE=\nB=${A:+x}|${N:+x}|${E:+x}|${E+x}", {"A": "1", "E": "", "B": "x|||x"}),
    ("A=1\nB=${A:?must}", {"A": "1", "B": "1"}),
    ('A="x" trailing\nB=2', {"A": "x", "B": "2"}),
    ("\ufeffA=1", {"A": "1"}),
    ("A=1\r\nB='2'\r\n", {"A": "1", "B": "2"}),
    ("K.x-y[0]=1", {"K.x-y[0]": "1"}),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse(text, expected):
    assert parse(text, strict=False) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A='unterminated", "line 1: unterminated quoted value for 'A'"),
        ('A=1\nB="x\n', "line 2: unterminated quoted value for 'B'"),
        ("A B=1", "cannot contain a space"),
        ("A$=1", "line 1: unexpected character in a variable name"),
        ("A=${N:?must}", "requires variable 'N'"),
        ("A=${N?must}", "requires variable 'N'"),
        ("E=\nA=${E:?must}", "requires variable 'E'"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(DotenvError, match=message.replace("$", "\\$")):
        parse(text, strict=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=$UNDEFINED", "not defined earlier"),
        ("A=${UNDEFINED}", "not defined earlier"),
        ('A="${UNDEFINED}"', "not defined earlier"),
        ("INHERITED\nA=1", "line 1 has no '='"),
        ("A=${B:-${C}}", "invalid, nested or not supported"),
        ("A=${}", "invalid, nested or not supported"),
        ("A=${1}", "invalid, nested or not supported"),
    ],
)
def test_parse_strict_errors(text, message):
    with pytest.raises(DotenvError, match=message):
        parse(text)


def test_parse_lenient_reads_undefined_as_empty_and_skips_inherited():
    assert parse("INHERITED\nA=$UNDEFINED|${U:-d}", strict=False) == {"A": "|d"}


def test_parse_strict_allows_defaults_for_undefined():
    assert parse("A=${U:-d}|${U-e}|${U:+x}") == {"A": "d|e|"}


def test_parse_last_line_without_equals_is_compose_quirk():
    # compose-go reads a last line without '=' as the value of an empty name; render() would refuse it.
    assert parse("A=1\nB", strict=False) == {"A": "1", "": "B"}


def test_parse_error_messages_do_not_contain_values():
    with pytest.raises(DotenvError) as e:
        parse("PASSWORD='hunter2-topsecret")
    assert "hunter2" not in str(e.value)
    for stray in ("hunter2-topsecret", "hunter2!topsecret", "hunter2 topsecret"):
        with pytest.raises(DotenvError) as e:
            parse(f"A=1\n{stray}\nB=2")
        assert "hunter2" not in str(e.value) and "!" not in str(e.value)
    with pytest.raises(DotenvError) as e:
        parse("PASSWORD=pa$sw0rd-topsecret")
    assert "sw0rd" not in str(e.value)
    assert "topsecret" not in str(e.value)


def test_random_round_trip():
    """Deterministic fuzz (no Hypothesis needed): encode -> parse is the identity."""
    rng = random.Random(20241122)  # noqa: S311 - reproducible test data, not security
    alphabet = "aZ09 _-=#$'\"\\{}:\n\r\t\v\f\x01\x7f\x85\xa0\u2028é☃𝄞"
    values = {f"V{i}": "".join(rng.choices(alphabet, k=rng.randint(0, 12))) for i in range(2000)}
    assert parse(render(values)) == values
