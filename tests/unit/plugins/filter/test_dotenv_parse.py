import re

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.ec2ops.stack.plugins.filter.dotenv_parse import dotenv_parse
from ansible_collections.ec2ops.stack.plugins.module_utils._dotenv import render

# Issue 15: a token holding ', \ and $ (secrets_dotenv writes it double-quoted, with escapes).
TOKEN = "it's\\a$token"


def test_a_value_with_quote_backslash_and_dollar_reads_back_exactly():
    text = render({"AUTHN_TOKEN": TOKEN, "REDIS_PASSWORD": "plain"}, header="Judge0 secrets")
    assert dotenv_parse(text) == {"AUTHN_TOKEN": TOKEN, "REDIS_PASSWORD": "plain"}
    # What the judge0 role's Jinja regex read before: not the token.
    old = re.sub(r"^'(.*)'$", r"\1", re.search(r"(?m)^AUTHN_TOKEN=(.*)$", text).group(1))
    assert old != TOKEN


def test_errors_name_the_line_never_the_value():
    with pytest.raises(AnsibleFilterError, match="line 2") as caught:
        dotenv_parse("A='s3cr3t-value'\nB=${UNDEFINED}\n")
    assert "s3cr3t" not in str(caught.value)
    assert dotenv_parse("A='x'\nB=${UNDEFINED}\n", strict=False) == {"A": "x", "B": ""}


def test_empty_input_is_an_empty_file():
    assert dotenv_parse(None) == {} and dotenv_parse("") == {}
