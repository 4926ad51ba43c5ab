"""Print, per port, whether a TCP connect is accepted, refused (RST) or filtered (no answer)."""

import socket
import sys

host = sys.argv[1]
for port in sys.argv[2:]:
    with socket.socket() as s:
        s.settimeout(3)
        try:
            s.connect((host, int(port)))
            print("open")
        except ConnectionRefusedError:
            print("refused")
        except OSError:
            print("filtered")
