"""Property tests of the encoder/parser pair (skipped where Hypothesis is not installed, e.g. ansible-test units).

tests/functional/test_secrets_dotenv_compose.py holds the same properties against real Compose.
"""

import pytest

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import (  # noqa: E402
    NAME_PATTERN,
    DotenvError,
    parse,
    render,
)
from ansible_collections.ec2ops.stack.plugins.module_utils._secrets_env import merge  # noqa: E402

VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
NAMES = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) < 30)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(variables=st.dictionaries(NAMES, VALUES, max_size=10), header=st.none() | VALUES)
def test_parse_inverts_render(variables, header):
    assert parse(render(variables, header=header)) == variables


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(text=st.text(max_size=60))
def test_parser_never_crashes(text):
    try:
        parse(text)
    except DotenvError:
        pass


@hypothesis.given(
    sources=st.lists(st.dictionaries(st.sampled_from("ABCD"), st.text(max_size=3), max_size=4), max_size=4),
    env=st.dictionaries(st.sampled_from("CDE"), st.text(max_size=3), max_size=3),
)
def test_merge_last_source_wins(sources, env):
    labelled = [(f"secret {i}", values) for i, values in enumerate(sources)]
    variables, overrides = merge(labelled, env)
    for name, value in variables.items():
        winners = [values[name] for values in [*sources, env] if name in values]
        assert value == winners[-1]
    assert len(overrides) == sum(1 for name in variables for values in [*sources, env] if name in values) - len(
        variables
    )
