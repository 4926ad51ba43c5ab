"""The dotenv encoder and parser against the real oracle: ``docker compose config`` (Compose v2, no daemon).

A value must reach a container unchanged both ways Compose reads a .env file:
``env_file: .env`` and ``${VAR}`` interpolation from the project ``.env``.
"""

import json
import pathlib
import subprocess

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import DotenvError, parse, render
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Named hard cases (shared with the module tests): each must survive both Compose paths byte for byte.
HARD_CASES = json.loads((pathlib.Path(__file__).parent / "secrets_dotenv" / "hard_cases.json").read_text())

_SPECIAL = list(" \t\n\r\\'\"$#={}:-+?`()!*;&|<>%@^~,.\x01\x0b\x0c\x1b\x7f\x85\xa0\u2028\ufeff\u00e9\u2603\U0001d11e")
# Fragments that mean something to a dotenv parser or a shell, glued together.
_TOKENS = [
    "$",
    "$$",
    "$HOME",
    "${HOME}",
    "${X:-d}",
    "'",
    '"',
    "\\",
    "\\n",
    "\\$",
    "\r",
    "\n",
    "#",
    " #",
    " ",
    "\t",
    "=",
]
VALUES = st.one_of(
    st.text(
        alphabet=st.one_of(
            st.sampled_from(_SPECIAL),
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        ),
        max_size=40,
    ),
    st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(alphabet="aZ9_", max_size=3)), max_size=12).map("".join),
)


def write_project(directory, names, env_file=".env"):
    services = {
        "envfile": {"image": "busybox", "env_file": [env_file]},
        "interp": {"image": "busybox", "environment": {name: "${%s}" % name for name in names}},  # noqa: UP031
    }
    (directory / "compose.yml").write_text(json.dumps({"services": services}))


def container_env(compose_config, directory, variables, header=None):
    """What each service's container would get, given ``render(variables)`` as the project .env."""
    (directory / ".env").write_bytes(render(variables, header=header).encode("utf-8"))
    write_project(directory, list(variables))
    config = compose_config(directory)
    return config["services"]["envfile"].get("environment") or {}, config["services"]["interp"].get("environment") or {}


def test_named_hard_cases(compose_config, tmp_path):
    via_env_file, via_interpolation = container_env(
        compose_config, tmp_path, HARD_CASES, header="Managed by tests\n# odd header"
    )
    for name, value in HARD_CASES.items():
        assert via_env_file.get(name) == value, name
        assert via_interpolation.get(name) == value, name


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(values=st.lists(VALUES, min_size=1, max_size=15))
def test_any_value_round_trips_through_compose(compose_config, tmp_path_factory, values):
    directory = tmp_path_factory.mktemp("roundtrip")
    variables = {f"V{i}": value for i, value in enumerate(values)}
    via_env_file, via_interpolation = container_env(compose_config, directory, variables)
    assert via_env_file == variables
    assert via_interpolation == variables


# --- parser: our reading of a dotenv text == Compose's, or both refuse it -------------------------------
NAMES = st.sampled_from(["V_A", "V_B", "V_C", "V_D", "V_E", "V_F"])
REFERENCES = st.sampled_from(
    ["$V_A", "${V_B}", "${V_C:-dflt}", "${V_D-dflt}", "${V_A:+alt}", "${V_B+alt}", "${V_C?req}", "$$", "$", "${}"]
)
ESCAPES = st.sampled_from(["\\n", "\\t", "\\r", "\\$", "\\\\", '\\"', "\\'", "\\0101", "\\q", "\\"])
PLAIN = st.text(alphabet="ab #=:{}-'\"\\\t", max_size=6)
UNQUOTED = st.lists(st.one_of(PLAIN, REFERENCES, ESCAPES), min_size=1, max_size=4).map("".join)
SINGLE = st.lists(st.one_of(st.text(alphabet='ab $#{}"\\\n\t', max_size=6), REFERENCES, ESCAPES), max_size=4).map(
    lambda parts: "'" + "".join(parts) + "'"
)
DOUBLE = st.lists(
    st.one_of(st.text(alphabet="ab #{}'\n\t", max_size=6), REFERENCES, ESCAPES), min_size=1, max_size=5
).map(lambda parts: '"' + "".join(parts) + '"')
ASSIGNMENT = st.tuples(
    st.sampled_from(["", "export ", "  "]),
    NAMES,
    st.sampled_from(["=", " = ", ":", "=\t"]),
    st.one_of(UNQUOTED, SINGLE, DOUBLE),
    st.sampled_from(["", "  ", " # trailing comment", "\t"]),
).map("".join)
LINE = st.one_of(ASSIGNMENT, ASSIGNMENT, ASSIGNMENT, st.sampled_from(["", "# comment", "   # indented comment"]))
DOCUMENT = st.tuples(st.lists(LINE, min_size=2, max_size=10), st.sampled_from(["\n", "\r\n"])).map(
    lambda t: t[1].join(t[0]) + t[1]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=DOCUMENT)
def test_parser_agrees_with_compose(compose_config, tmp_path_factory, text):
    directory = tmp_path_factory.mktemp("parser")
    (directory / "x.env").write_bytes(text.encode("utf-8"))
    write_project(directory, [], env_file="x.env")
    try:
        config = compose_config(directory)
    except subprocess.CalledProcessError:
        with pytest.raises(DotenvError):
            parse(text, strict=True)
        return
    assert parse(text, strict=False) == (config["services"]["envfile"].get("environment") or {})
