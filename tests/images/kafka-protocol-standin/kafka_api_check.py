"""Broker API check: is a Kafka broker answering protocol requests at HOST:PORT?

Sends an ApiVersions request (v0, the first request every Kafka client sends, also what
kafka-broker-api-versions.sh starts with) over plain TCP and exits 0 only when the broker
answers without error and offers the requests the kafka role relies on (Metadata,
ApiVersions, CreateTopics, DescribeConfigs). Standard library only.
Usage: kafka-api-check [HOST:PORT]   (default localhost:29092)
"""

import socket
import struct
import sys

API_VERSIONS = 18
REQUIRED = {0: "Produce", 1: "Fetch", 3: "Metadata", 18: "ApiVersions", 19: "CreateTopics", 32: "DescribeConfigs"}


def receive(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def api_keys(host, port, timeout=5.0):
    client_id = b"ec2ops-kafka-api-check"
    header = struct.pack(">hhih", API_VERSIONS, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        (size,) = struct.unpack(">i", receive(sock, 4))
        data = receive(sock, size)
    correlation_id, error_code, count = struct.unpack(">ihi", data[:10])
    if correlation_id != 1:
        raise ValueError(f"unexpected correlation id {correlation_id}")
    if error_code:
        raise ValueError(f"ApiVersions answered with error code {error_code}")
    return {struct.unpack(">h", data[10 + 6 * i : 12 + 6 * i])[0] for i in range(count)}


def main(argv):
    target = argv[1] if len(argv) > 1 else "localhost:29092"
    host, port = target.rpartition(":")[::2]
    try:
        keys = api_keys(host or "localhost", int(port))
    except (OSError, ValueError, struct.error) as e:
        print(f"kafka-api-check {target}: {e}", file=sys.stderr)
        return 1
    missing = sorted(name for key, name in REQUIRED.items() if key not in keys)
    if missing:
        print(f"kafka-api-check {target}: the broker does not offer {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"kafka-api-check {target}: ok ({len(keys)} APIs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
