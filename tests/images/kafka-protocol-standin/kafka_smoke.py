"""Kafka client smoke test with kafka-python: cluster metadata, then one message produced and consumed.

Usage: kafka-smoke BOOTSTRAP TOPIC   (for example kafka:29092 orders)
Prints one JSON object: cluster_id, brokers (as advertised), topics with their partition
counts, and the message produced to partition 0 of TOPIC and read back from the same offset.
Exits 1 (with the JSON, error included) when any step fails.
"""

import json
import sys
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient


def smoke(bootstrap, topic):
    report = {"bootstrap": bootstrap, "topic": topic}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ec2ops-kafka-smoke")
    try:
        cluster = admin.describe_cluster()
        report["cluster_id"] = cluster.get("cluster_id")
        report["brokers"] = [f"{b['host']}:{b['port']}" for b in cluster.get("brokers", [])]
        report["topics"] = {
            t.get("topic", t.get("name")): len(t.get("partitions") or []) for t in admin.describe_topics()
        }
    finally:
        admin.close()
    value = f"ec2ops-smoke-{uuid.uuid4().hex}".encode()
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="ec2ops-kafka-smoke")
    try:
        metadata = producer.send(topic, value, partition=0).get(timeout=15)
    finally:
        producer.close()
    report["produced"] = {"partition": metadata.partition, "offset": metadata.offset, "value": value.decode()}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="ec2ops-kafka-smoke", consumer_timeout_ms=15000)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, metadata.offset)
        message = next(iter(consumer), None)
    finally:
        consumer.close()
    report["consumed"] = None if message is None else {"offset": message.offset, "value": message.value.decode()}
    report["ok"] = message is not None and message.value == value
    return report


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        report = smoke(argv[1], argv[2])
    except Exception as e:  # noqa: BLE001 - report any client failure as JSON.
        report = {"bootstrap": argv[1], "topic": argv[2], "ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(report, sort_keys=True))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
