# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One check for the networks users type (allow-lists for nginx, DOCKER-USER, security groups).

This is a private module_utils (leading underscore): no stable API.

``cidr_problems`` parses each value with Python's ``ipaddress`` (not a regular expression, which
let ``999.1.1.1/99`` through): an IPv4 or IPv6 network, or a single address. A network with host
bits set (``10.0.0.5/16``) is refused with the network it probably means, because nginx and
iptables silently widen or narrow it.
"""

import ipaddress


def cidr_problems(values):
    """A sentence per value that is not an IPv4 or IPv6 network or address (empty when all are)."""
    if isinstance(values, str):
        values = [values]
    problems = []
    for value in values or []:
        text = str(value).strip()
        if not isinstance(value, str) or text != value or not text:
            problems.append(f"{value!r} is not a network such as 203.0.113.0/24 or 2001:db8::/32")
            continue
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                problems.append(f"{value!r} is not a network such as 203.0.113.0/24 or 2001:db8::/32")
                continue
            problems.append(f"{value!r} has host bits set: did you mean {network}?")
    return problems
