#!/usr/bin/python
# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: kafka_topic
short_description: Manage Kafka topics as code over the Kafka protocol
version_added: 0.1.0
description:
  - Creates missing topics, raises partition counts and brings topic configs (C(retention.ms), C(cleanup.policy),
    ...) to the given values, talking to the broker with kafka-python's admin client. The same code works against
    any broker that speaks the Kafka protocol; no Kafka command-line tools or JVM are needed on the host.
  - Never deletes a topic unless told to, with O(state=absent) (O(topics[].state=absent)) or O(purge=true).
    Kafka's internal topics (names starting with C(__)) are never deleted.
  - Changes Kafka cannot make are refused before anything is touched, with a message saying what to do instead
    (fewer partitions than the topic has, a different replication factor).
  - Manage one topic with O(name), or many with O(topics) (one connection, one look-up for all of them). With
    neither, the module only connects and reports the cluster (a readiness check).
  - Config values are compared with the values the broker reports (strings; lists such as
    C(compact,delete) ignore blanks after commas). A value equal to the broker default counts as set.
author:
  - ec2ops.stack maintainers (@ec2ops)
requirements:
  - kafka-python 2.0.2 or later on the host that runs the module (Debian and Ubuntu package C(python3-kafka);
    C(pip install kafka-python) elsewhere).
options:
  bootstrap_servers:
    description:
      - Brokers to connect to first, as C(host:port). The client then uses the addresses the broker advertises,
        so they must be reachable from the host running the module (for the ec2ops.stack.kafka role the host
        listener, C(127.0.0.1:9092)).
    type: list
    elements: str
    required: true
  name:
    description:
      - One topic to manage. Mutually exclusive with O(topics).
    type: str
  partitions:
    description:
      - Number of partitions of O(name). Omitted, a new topic gets one partition and an existing topic keeps its count.
      - Can only grow. Growing changes which partition a key maps to, so keyed consumers may see reordering.
    type: int
  replication_factor:
    description:
      - Replication factor of O(name) when it is created (default 1, a single broker). An existing topic with a
        different factor is refused (changing it needs a partition reassignment).
    type: int
  config:
    description:
      - Topic configs of O(name), for example C(retention.ms) or C(cleanup.policy). Values may be strings, numbers,
        booleans or lists (joined with commas).
    type: dict
  state:
    description:
      - V(present) creates or updates O(name), V(absent) deletes it (with its data). Defaults to V(present).
    type: str
    choices: [present, absent]
  topics:
    description:
      - Topics to manage, each like the single-topic options. Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description: Topic name (ASCII letters, digits, C(.), C(_) and C(-), at most 249 characters).
        type: str
        required: true
      partitions:
        description: As O(partitions).
        type: int
      replication_factor:
        description: As O(replication_factor).
        type: int
      config:
        description: As O(config).
        type: dict
      state:
        description: As O(state).
        type: str
        choices: [present, absent]
        default: present
  purge:
    description:
      - Delete every topic on the broker that O(topics) does not list (internal C(__) topics excepted), with its
        data. Requires O(topics).
    type: bool
    default: false
  purge_config:
    description:
      - Remove topic-level config overrides that are not given, so those configs fall back to the broker defaults.
    type: bool
    default: false
  expected_cluster_id:
    description:
      - Fail before changing anything unless the broker reports this cluster id (the KRaft cluster id, 22
        characters), so that a wrong address never changes another cluster.
    type: str
  client_id:
    description: Client id the broker sees in its logs and quotas.
    type: str
    default: ec2ops-kafka-topic
  connect_timeout:
    description: Seconds to wait for the first broker to answer.
    type: int
    default: 10
  request_timeout:
    description: Seconds to wait for each admin request.
    type: int
    default: 30
notes:
  - Plain TCP only (the PLAINTEXT listener bound to 127.0.0.1 or a private address); TLS and SASL are not supported.
  - With kafka-python 3 or later configs change through IncrementalAlterConfigs, one key at a time. Debian's
    python3-kafka 2.0.2 only has AlterConfigs, which replaces all overrides of a topic; the module then sends the
    topic's full set of overrides (current ones plus the wanted ones), so none are lost.
  - Raising partitions uses CreatePartitions; deleting uses DeleteTopics (C(delete.topic.enable) must be on, the
    default).
extends_documentation_fragment:
  - ec2ops.stack.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the broker and reports what would change; sends no request that changes anything.
  diff_mode:
    support: full
    details:
      - Shows partitions, replication factor and the managed configs of each topic before and after.
  idempotent:
    support: full
seealso:
  - name: Kafka topic configs
    description: Every topic-level config, its type and default.
    link: https://kafka.apache.org/documentation/#topicconfigs
"""

EXAMPLES = r"""
- name: Create the application topics (the broker's host listener)
  ec2ops.stack.kafka_topic:
    bootstrap_servers: [127.0.0.1:9092]
    topics:
      - name: orders
        partitions: 6
        config:
          retention.ms: 604800000      # 7 days
          cleanup.policy: delete
      - name: order-state
        partitions: 3
        config:
          cleanup.policy: compact
          min.compaction.lag.ms: 60000
      - name: old-events
        state: absent                  # deleted, with its data

- name: One topic
  ec2ops.stack.kafka_topic:
    bootstrap_servers: 127.0.0.1:9092
    name: payments
    partitions: 3
    config:
      retention.ms: 86400000

- name: Wait until the broker answers admin requests (no topic given)
  ec2ops.stack.kafka_topic:
    bootstrap_servers: [127.0.0.1:9092]
    expected_cluster_id: "{{ kafka_cluster_id }}"
  register: kafka_ready
  until: kafka_ready is succeeded
  retries: 30
  delay: 2

- name: Make the broker hold exactly these topics and overrides
  ec2ops.stack.kafka_topic:
    bootstrap_servers: [127.0.0.1:9092]
    topics: "{{ kafka_topics }}"
    purge: true
    purge_config: true
"""

RETURN = r"""
cluster_id:
  description: Cluster id the broker reports (KRaft cluster id).
  returned: always
  type: str
  sample: MkU3OEVBNTcwNTJENDM2Qg
controller_id:
  description: Node id of the active controller the broker reports.
  returned: always
  type: int
  sample: 1
brokers:
  description: Brokers the cluster reports, with the addresses they advertise.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Node id.
      type: int
      sample: 1
    host:
      description: Advertised host.
      type: str
      sample: 127.0.0.1
    port:
      description: Advertised port.
      type: int
      sample: 9092
broker_topics:
  description: Names of all topics on the broker before the change, internal ones included, sorted.
  returned: always
  type: list
  elements: str
  sample: [__consumer_offsets, orders]
topics:
  description: What happened, or in check mode would happen, to each topic given, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Topic name.
      type: str
      sample: orders
    action:
      description: V(create), V(update), V(delete) or V(none).
      type: str
      sample: create
    partitions:
      description: Partition count after the change (created or raised topics).
      type: int
      returned: when created or raised
      sample: 6
    partitions_before:
      description: Partition count before it was raised.
      type: int
      returned: when raised
    replication_factor:
      description: Replication factor of a created topic.
      type: int
      returned: when created
    config_set:
      description: Config names set (at creation or changed).
      type: list
      elements: str
      returned: when created or configs changed
      sample: [retention.ms]
    config_removed:
      description: Config overrides removed (O(purge_config=true)).
      type: list
      elements: str
      returned: when configs changed
client_version:
  description: Version of kafka-python that ran.
  returned: always
  type: str
  sample: 2.0.2
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.ec2ops.stack.plugins.module_utils._kafka_topics import (
    BrokerError,
    KafkaTopicsError,
    TopicAdmin,
    normalize_topics,
    plan_changes,
)

try:
    import kafka
    import kafka.admin
    import kafka.errors
except ImportError:
    KAFKA_IMPORT_ERROR = traceback.format_exc()
else:
    KAFKA_IMPORT_ERROR = None

_SINGLE = ("partitions", "replication_factor", "config", "state")


def connect(module):
    """A KafkaAdminClient, or fail saying which address did not answer."""
    params = module.params
    settings = {
        "bootstrap_servers": params["bootstrap_servers"],
        "client_id": params["client_id"],
        "request_timeout_ms": params["request_timeout"] * 1000,
    }
    # How long the first connection may take is called differently in 2.x and 3.x.
    defaults = getattr(kafka.admin.KafkaAdminClient, "DEFAULT_CONFIG", {})
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in defaults:
            settings[key] = params["connect_timeout"] * 1000
            break
    try:
        return kafka.admin.KafkaAdminClient(**settings)
    except Exception as e:  # noqa: BLE001 - NoBrokersAvailable, socket and DNS errors alike.
        module.fail_json(
            msg=f"no Kafka broker answered at {', '.join(params['bootstrap_servers'])} "
            f"within {params['connect_timeout']}s: {type(e).__name__}: {e}",
            client_version=kafka.__version__,
        )


def desired_topics(module):
    params = module.params
    if params["name"] is not None:
        item = {"name": params["name"]}
        item.update({key: params[key] for key in _SINGLE if params[key] is not None})
        return normalize_topics([item])
    return normalize_topics(params["topics"])


def main():
    topic_options = dict(
        name=dict(type="str", required=True),
        partitions=dict(type="int"),
        replication_factor=dict(type="int"),
        config=dict(type="dict"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(
        argument_spec=dict(
            bootstrap_servers=dict(type="list", elements="str", required=True),
            name=dict(type="str"),
            partitions=dict(type="int"),
            replication_factor=dict(type="int"),
            config=dict(type="dict"),
            state=dict(type="str", choices=["present", "absent"]),
            topics=dict(type="list", elements="dict", options=topic_options),
            purge=dict(type="bool", default=False),
            purge_config=dict(type="bool", default=False),
            expected_cluster_id=dict(type="str"),
            client_id=dict(type="str", default="ec2ops-kafka-topic"),
            connect_timeout=dict(type="int", default=10),
            request_timeout=dict(type="int", default=30),
        ),
        mutually_exclusive=[("name", "topics")],
        required_by={key: "name" for key in _SINGLE},
        required_if=[("purge", True, ["topics"])],
        supports_check_mode=True,
    )
    if KAFKA_IMPORT_ERROR:
        module.fail_json(
            msg=missing_required_lib("kafka-python", reason="to talk to Kafka (Debian/Ubuntu package: python3-kafka)"),
            exception=KAFKA_IMPORT_ERROR,
        )
    params = module.params
    try:
        desired = desired_topics(module)
    except KafkaTopicsError as e:
        module.fail_json(msg=str(e))

    client = connect(module)
    admin = TopicAdmin(client, kafka.admin, kafka.errors, timeout_ms=params["request_timeout"] * 1000)
    result = dict(changed=False, client_version=kafka.__version__)
    try:
        result.update(admin.cluster())
        expected = params["expected_cluster_id"]
        if expected and result["cluster_id"] != expected:
            module.fail_json(
                msg=f"the broker at {', '.join(params['bootstrap_servers'])} belongs to cluster "
                f"{result['cluster_id']}, not {expected}; nothing was changed",
                **result,
            )
        actual = admin.read([topic["name"] for topic in desired if topic["state"] == "present"])
        result["broker_topics"] = sorted(actual)
        plan = plan_changes(desired, actual, purge=params["purge"], purge_config=params["purge_config"])
        result["topics"] = plan.records()
        for warning in plan.warnings:
            module.warn(warning)
        if plan.errors:
            module.fail_json(msg="; ".join(plan.errors) + "; nothing was changed", **result)
        result["changed"] = plan.changed
        if module._diff and plan.changed:
            result["diff"] = {"before": plan.before, "after": plan.after}
        if plan.changed and not module.check_mode:
            admin.apply(plan)
    except BrokerError as e:
        module.fail_json(msg=str(e), **result)
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
