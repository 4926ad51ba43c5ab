"""Probe a URL again and again for a while, from a probe container, and count what came back.

Usage: http_watch.py URL SECONDS. Every 50 ms one GET (0.3 s timeout). Prints one JSON line:
{"probes": n, "http": {status: count}, "refused": n, "filtered": n, "started": t, "ended": t}
(t: seconds since the epoch). Any "http" entry means the API answered. The token, if any, comes
from J0_TOKEN (never an argument). Stops by itself.
"""

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request

url, seconds = sys.argv[1], float(sys.argv[2])
counts = {"probes": 0, "http": {}, "refused": 0, "filtered": 0, "started": time.time()}
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    request = urllib.request.Request(url)  # noqa: S310 (the test's own http:// URL)
    if os.environ.get("J0_TOKEN"):
        request.add_header("X-Auth-Token", os.environ["J0_TOKEN"])
    counts["probes"] += 1
    try:
        with urllib.request.urlopen(request, timeout=0.3) as response:  # noqa: S310
            counts["http"][str(response.status)] = counts["http"].get(str(response.status), 0) + 1
    except urllib.error.HTTPError as exc:
        counts["http"][str(exc.code)] = counts["http"].get(str(exc.code), 0) + 1
    except urllib.error.URLError as exc:
        counts["refused" if isinstance(exc.reason, ConnectionRefusedError) else "filtered"] += 1
    except (socket.timeout, TimeoutError, ConnectionError, OSError):
        counts["filtered"] += 1
    time.sleep(0.05)
counts["ended"] = time.time()
print(json.dumps(counts, sort_keys=True), flush=True)
