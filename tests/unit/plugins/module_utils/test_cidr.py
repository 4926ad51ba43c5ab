import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._cidr import cidr_problems


@pytest.mark.parametrize(
    "value", ["203.0.113.0/24", "10.0.0.0/16", "10.1.2.3", "0.0.0.0/0", "2001:db8::/32", "::/0", "::1"]
)
def test_networks_and_addresses_pass(value):
    assert cidr_problems([value]) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("999.1.1.1/99", "is not a network"),  # the old regular expression let it through
        ("10.0.0.0/33", "is not a network"),
        ("10.0.0.0/16; deny all", "is not a network"),
        ("example.com", "is not a network"),
        (" 10.0.0.0/8", "is not a network"),
        ("", "is not a network"),
        (8, "is not a network"),
        ("10.0.0.5/16", "has host bits set: did you mean 10.0.0.0/16?"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
    ],
)
def test_bad_values_are_named(value, message):
    (problem,) = cidr_problems([value])
    assert message in problem and repr(value) in problem


def test_one_string_is_one_value():
    assert cidr_problems("10.0.0.0/8") == [] and len(cidr_problems("nope")) == 1
