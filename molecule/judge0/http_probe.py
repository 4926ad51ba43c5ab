"""GET a URL from a probe container: print the HTTP status, "refused" (RST) or "filtered" (no answer).

The API token, if any, comes from the J0_TOKEN environment variable (never an argument).
"""

import os
import socket
import sys
import urllib.error
import urllib.request

request = urllib.request.Request(sys.argv[1])  # noqa: S310 (the test's own http:// URL)
if os.environ.get("J0_TOKEN"):
    request.add_header("X-Auth-Token", os.environ["J0_TOKEN"])
try:
    with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
        print(response.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except urllib.error.URLError as exc:
    print("refused" if isinstance(exc.reason, ConnectionRefusedError) else "filtered")
except (socket.timeout, TimeoutError):
    print("filtered")
