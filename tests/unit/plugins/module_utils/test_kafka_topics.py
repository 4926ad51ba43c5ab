"""Unit tests for Kafka topics as code: the diff logic and the kafka-python adapter (no broker needed).

The result shapes below are copied from real kafka-python calls against a Kafka-protocol broker:
Debian's python3-kafka 2.0.2 returns protocol responses, kafka-python 3.x dictionaries.
tests/functional/test_kafka_topic_module.py runs the module against a real broker process.
"""

from types import SimpleNamespace

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._kafka_topics import (
    BrokerError,
    KafkaTopicsError,
    TopicAdmin,
    check_alter_result,
    comparable,
    config_value,
    normalize_topics,
    parse_cluster,
    parse_config_descriptions,
    parse_topic_descriptions,
    plan_changes,
)


def topic(partitions=3, replication_factor=1, config=None, overrides=(), internal=False):
    return {
        "partitions": partitions,
        "replication_factor": replication_factor,
        "internal": internal,
        "config": config,
        "overrides": list(overrides),
    }


def plan(desired, actual, **kwargs):
    return plan_changes(normalize_topics(desired), actual, **kwargs)


# --- normalizing the desired topics ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (604800000, "604800000"),
        (True, "true"),
        (False, "false"),
        (0.5, "0.5"),
        (1.0, "1"),
        ("compact,delete", "compact,delete"),
        (["compact", "delete"], "compact,delete"),
        ("", ""),
    ],
)
def test_config_values_take_kafkas_string_form(value, expected):
    assert config_value(value) == expected


def test_config_value_rejects_a_dictionary():
    with pytest.raises(KafkaTopicsError, match="string, number, boolean or list"):
        config_value({"a": 1})


def test_list_values_compare_without_blanks_after_commas():
    assert comparable("compact, delete") == comparable("compact,delete")
    assert comparable(" 100 ") == "100"
    assert comparable(None) is None


def test_a_name_alone_is_a_topic_with_nothing_else_managed():
    assert normalize_topics(["orders"]) == [
        {"name": "orders", "partitions": None, "replication_factor": None, "config": {}, "state": "present"}
    ]


def test_topic_options_are_normalized():
    [spec] = normalize_topics(
        [
            {
                "name": "orders",
                "partitions": "6",
                "config": {"retention.ms": 1000, "cleanup.policy": ["compact", "delete"]},
            }
        ]
    )
    assert spec["partitions"] == 6
    assert spec["config"] == {"retention.ms": "1000", "cleanup.policy": "compact,delete"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "bad name"}, "not a valid Kafka topic name"),
        ({"name": "x" * 250}, "not a valid Kafka topic name"),
        ({"name": ".."}, "not a valid Kafka topic name"),
        ({"name": ""}, "needs a name"),
        ({"partitions": 1}, "needs a name"),
        ({"name": "t", "partitions": 0}, "at least 1"),
        ({"name": "t", "partitions": "many"}, "whole number"),
        ({"name": "t", "partitions": 1.5}, "at least 1"),
        ({"name": "t", "partitions": True}, "whole number"),
        ({"name": "t", "replication_factor": -1}, "at least 1"),
        ({"name": "t", "state": "deleted"}, "present or absent"),
        ({"name": "t", "retention": 1}, "unknown option"),
        ({"name": "t", "config": {"Retention MS": 1}}, "not a Kafka config name"),
        ({"name": "t", "config": {"retention.ms": None}}, "has no value"),
        ({"name": "t", "config": ["retention.ms"]}, "must be a dictionary"),
        (42, "a name or a dictionary"),
    ],
)
def test_invalid_topics_are_refused_with_the_reason(item, message):
    with pytest.raises(KafkaTopicsError, match=message):
        normalize_topics([item])


def test_duplicate_topics_are_refused():
    with pytest.raises(KafkaTopicsError, match="more than once"):
        normalize_topics(["a", {"name": "a", "partitions": 2}])


def test_names_that_differ_only_by_dot_and_underscore_collide():
    with pytest.raises(KafkaTopicsError, match="collide"):
        normalize_topics(["app.events", "app_events"])


# --- planning ----------------------------------------------------------------------------------


def test_missing_topics_are_created_with_defaults_for_what_is_not_given():
    result = plan(["a", {"name": "b", "partitions": 6, "replication_factor": 3, "config": {"retention.ms": 1}}], {})
    assert result.create == [
        {"name": "a", "partitions": 1, "replication_factor": 1, "config": {}},
        {"name": "b", "partitions": 6, "replication_factor": 3, "config": {"retention.ms": "1"}},
    ]
    assert result.changed
    assert result.before == {"a": None, "b": None}
    assert result.after["b"] == {"partitions": 6, "replication_factor": 3, "config": {"retention.ms": "1"}}


def test_a_topic_that_matches_is_unchanged():
    config = {"retention.ms": "1000", "cleanup.policy": "delete"}
    actual = {"orders": topic(3, config=config, overrides=["retention.ms"])}
    result = plan([{"name": "orders", "partitions": 3, "config": {"retention.ms": 1000}}], actual)
    assert not result.changed
    assert result.unchanged == ["orders"]
    assert result.records() == [{"name": "orders", "action": "none"}]
    assert result.before == result.after == {}


def test_a_value_equal_to_the_broker_default_counts_as_set():
    actual = {"orders": topic(config={"cleanup.policy": "delete"}, overrides=[])}
    assert not plan([{"name": "orders", "config": {"cleanup.policy": "delete"}}], actual).changed


def test_omitted_partitions_keep_the_existing_count():
    assert not plan(["orders"], {"orders": topic(12)}).changed


def test_a_changed_config_is_set_and_other_overrides_are_kept():
    config = {"retention.ms": "1000", "segment.ms": "60000"}
    actual = {"orders": topic(config=config, overrides=["retention.ms", "segment.ms"])}
    result = plan([{"name": "orders", "config": {"retention.ms": 2000}}], actual)
    assert result.configs == [
        {
            "name": "orders",
            "set": {"retention.ms": "2000"},
            "remove": [],
            # AlterConfigs (kafka-python 2.x) replaces all overrides: the set sent keeps segment.ms.
            "overrides": {"retention.ms": "2000", "segment.ms": "60000"},
        }
    ]
    assert result.before["orders"]["config"] == {"retention.ms": "1000"}
    assert result.after["orders"]["config"] == {"retention.ms": "2000"}
    assert result.records() == [
        {"name": "orders", "action": "update", "config_set": ["retention.ms"], "config_removed": []}
    ]


def test_a_config_the_broker_does_not_report_is_set():
    actual = {"orders": topic(config={"retention.ms": "1000"}, overrides=["retention.ms"])}
    result = plan([{"name": "orders", "config": {"retention.ms": 1000, "cleanup.policy": "compact"}}], actual)
    assert [c["set"] for c in result.configs] == [{"cleanup.policy": "compact"}]


def test_list_values_with_blanks_match():
    actual = {"orders": topic(config={"cleanup.policy": "compact,delete"}, overrides=["cleanup.policy"])}
    assert not plan([{"name": "orders", "config": {"cleanup.policy": "compact, delete"}}], actual).changed


def test_purge_config_removes_overrides_that_are_not_given():
    actual = {
        "orders": topic(
            config={"retention.ms": "1000", "segment.ms": "60000", "cleanup.policy": "delete"},
            overrides=["retention.ms", "segment.ms"],
        )
    }
    result = plan([{"name": "orders", "config": {"retention.ms": 1000}}], actual, purge_config=True)
    assert result.configs == [
        {"name": "orders", "set": {}, "remove": ["segment.ms"], "overrides": {"retention.ms": "1000"}}
    ]
    assert result.before["orders"]["config"] == {"retention.ms": "1000", "segment.ms": "60000"}
    assert result.after["orders"]["config"] == {"retention.ms": "1000"}


def test_without_purge_config_unlisted_overrides_stay():
    actual = {"orders": topic(config={"segment.ms": "60000"}, overrides=["segment.ms"])}
    assert not plan(["orders"], actual).changed


def test_configs_are_left_alone_with_a_warning_when_the_broker_reports_none():
    result = plan([{"name": "orders", "config": {"retention.ms": 1}}], {"orders": topic(config=None)})
    assert not result.changed
    assert result.warnings and "reported no configuration for topic orders" in result.warnings[0]


def test_partitions_are_raised():
    result = plan([{"name": "orders", "partitions": 6}], {"orders": topic(3)})
    assert result.partitions == [{"name": "orders", "from": 3, "to": 6}]
    assert result.after["orders"]["partitions"] == 6
    assert result.records() == [{"name": "orders", "action": "update", "partitions": 6, "partitions_before": 3}]


def test_fewer_partitions_are_refused_with_what_to_do_instead():
    result = plan([{"name": "orders", "partitions": 2}], {"orders": topic(3)})
    assert not result.partitions
    assert result.errors == [
        "orders has 3 partitions and 2 are asked for: Kafka cannot remove partitions (keep partitions: 3, "
        "or delete the topic with state: absent and create it again, losing its data)"
    ]


def test_another_replication_factor_is_refused():
    result = plan([{"name": "orders", "replication_factor": 3}], {"orders": topic(replication_factor=1)})
    assert "replication factor 1 and 3 is asked for" in result.errors[0]


def test_every_refusal_is_reported_at_once():
    result = plan(
        [{"name": "a", "partitions": 1}, {"name": "b", "replication_factor": 2}],
        {"a": topic(2), "b": topic(1)},
    )
    assert len(result.errors) == 2


def test_absent_deletes_an_existing_topic_and_ignores_a_missing_one():
    result = plan([{"name": "old", "state": "absent"}, {"name": "gone", "state": "absent"}], {"old": topic(2)})
    assert result.delete == ["old"]
    assert result.unchanged == ["gone"]
    assert result.after == {"old": None}
    assert result.before == {"old": {"partitions": 2, "replication_factor": 1}}


def test_internal_topics_are_never_deleted():
    result = plan([{"name": "__consumer_offsets", "state": "absent"}], {"__consumer_offsets": topic(50, internal=True)})
    assert not result.delete
    assert "internal Kafka topic" in result.errors[0]


def test_topics_are_never_deleted_without_purge():
    assert not plan(["a"], {"a": topic(), "b": topic()}).changed


def test_purge_deletes_unlisted_topics_but_not_internal_ones():
    actual = {
        "a": topic(),
        "b": topic(),
        "__consumer_offsets": topic(50, internal=True),
        "__other": topic(),
        "_schemas": topic(),
    }
    result = plan(["a"], actual, purge=True)
    assert result.delete == ["_schemas", "b"]


def test_records_cover_every_action():
    actual = {"keep": topic(), "grow": topic(1), "old": topic()}
    result = plan(
        [
            "keep",
            {"name": "grow", "partitions": 2},
            {"name": "new", "config": {"retention.ms": 5}},
            {"name": "old", "state": "absent"},
        ],
        actual,
    )
    assert result.records() == [
        {"name": "grow", "action": "update", "partitions": 2, "partitions_before": 1},
        {"name": "keep", "action": "none"},
        {"name": "new", "action": "create", "partitions": 1, "replication_factor": 1, "config_set": ["retention.ms"]},
        {"name": "old", "action": "delete"},
    ]


# --- reading kafka-python results --------------------------------------------------------------

DESCRIBE_TOPICS_2X = [
    {
        "error_code": 0,
        "topic": "t20",
        "is_internal": False,
        "partitions": [
            {"error_code": 0, "partition": 0, "leader": 111, "replicas": [111], "isr": [111], "offline_replicas": []},
            {"error_code": 0, "partition": 1, "leader": 111, "replicas": [111], "isr": [111], "offline_replicas": []},
        ],
    },
    {"error_code": 3, "topic": "nope", "is_internal": False, "partitions": []},
]
DESCRIBE_TOPICS_3X = [
    {
        "error_code": 0,
        "name": "c1",
        "topic_id": "01a201e5-2ac9-7753-98e6-d90419b24c89",
        "is_internal": False,
        "partitions": [
            {
                "error_code": 0,
                "partition_index": 0,
                "leader_id": 1,
                "leader_epoch": 0,
                "replica_nodes": [1, 2, 3],
                "isr_nodes": [1, 2, 3],
                "offline_replicas": [],
            }
        ],
        "authorized_operations": None,
    },
    {"error_code": 0, "name": "__consumer_offsets", "is_internal": True, "partitions": []},
]


def test_describe_topics_of_both_client_generations():
    assert parse_topic_descriptions(DESCRIBE_TOPICS_2X) == {
        "t20": {"partitions": 2, "replication_factor": 1, "internal": False}
    }
    assert parse_topic_descriptions(DESCRIBE_TOPICS_3X) == {
        "c1": {"partitions": 1, "replication_factor": 3, "internal": False},
        "__consumer_offsets": {"partitions": 0, "replication_factor": 0, "internal": True},
    }


def test_describe_configs_of_kafka_python_3():
    result = {
        "topic": {
            "c1": {
                "retention.ms": {"value": "3600000", "read_only": False, "config_source": "DYNAMIC_TOPIC_CONFIG"},
                "cleanup.policy": {"value": "delete", "read_only": False, "config_source": "DEFAULT_CONFIG"},
            },
            "empty": {},
        }
    }
    assert parse_config_descriptions(result) == {
        "c1": {"config": {"retention.ms": "3600000", "cleanup.policy": "delete"}, "overrides": ["retention.ms"]},
        "empty": {"config": None, "overrides": []},
    }


def test_describe_configs_of_kafka_python_2():
    # DescribeConfigsResponse v1/v2: entries carry config_source (1 = topic override).
    v2 = SimpleNamespace(
        resources=[
            (
                0,
                "No error.",
                2,
                "t20",
                [
                    ("retention.ms", "3600000", False, 1, False, []),
                    ("cleanup.policy", "delete", False, 5, False, []),
                ],
            )
        ]
    )
    # v0: entries carry is_default instead.
    v0 = SimpleNamespace(resources=[(0, None, 2, "old", [("segment.ms", "1", False, False, False)])])
    assert parse_config_descriptions([v2, v0]) == {
        "t20": {"config": {"retention.ms": "3600000", "cleanup.policy": "delete"}, "overrides": ["retention.ms"]},
        "old": {"config": {"segment.ms": "1"}, "overrides": ["segment.ms"]},
    }


def test_a_describe_configs_error_is_raised():
    response = SimpleNamespace(resources=[(29, "Topic authorization failed.", 2, "t", [])])
    with pytest.raises(BrokerError, match="DescribeConfigs for topic t failed: error 29"):
        parse_config_descriptions(response)


def test_alter_results_of_both_generations():
    check_alter_result({"topic": {"t": "OK"}}, "t")
    check_alter_result(SimpleNamespace(resources=[(0, None, 2, "t")]), "t")
    with pytest.raises(BrokerError, match="InvalidConfig"):
        check_alter_result({"topic": {"t": "[Error 40] InvalidConfigurationError: InvalidConfig"}}, "t")
    with pytest.raises(BrokerError, match="error 40 Unknown topic config name: x"):
        check_alter_result(SimpleNamespace(resources=[(40, "Unknown topic config name: x", 2, "t")]), "t")


def test_cluster_of_both_generations():
    v2 = {
        "throttle_time_ms": 0,
        "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": None}],
        "cluster_id": "MkU3OEVBNTcwNTJENDM2Qk",
        "controller_id": 1,
    }
    v3 = {
        "cluster_id": "MkU3OEVBNTcwNTJENDM2Qk",
        "controller_id": 1,
        "brokers": [{"broker_id": 1, "host": "127.0.0.1", "port": 9092, "rack": None}],
    }
    expected = {
        "cluster_id": "MkU3OEVBNTcwNTJENDM2Qk",
        "controller_id": 1,
        "brokers": [{"id": 1, "host": "127.0.0.1", "port": 9092}],
    }
    assert parse_cluster(v2) == parse_cluster(v3) == expected


# --- carrying a plan out (fake admin clients) --------------------------------------------------


class FakeAdminModule:
    class ConfigResourceType:
        TOPIC = "TOPIC"

    class ConfigResource:
        def __init__(self, resource_type, name, configs=None):
            self.resource_type, self.name, self.configs = resource_type, name, configs

    class NewTopic:
        def __init__(self, name, num_partitions, replication_factor, topic_configs=None):
            self.args = (name, num_partitions, replication_factor, topic_configs)

    class NewPartitions:
        def __init__(self, total_count):
            self.total_count = total_count


class FakeErrors:
    class IncompatibleBrokerVersion(Exception):
        pass


class Client2x:
    """The calls and results of kafka-python 2.0.2 (no ``incremental``, no ``config_filter``)."""

    def __init__(self):
        self.calls = []

    def describe_topics(self, topics=None):
        return DESCRIBE_TOPICS_2X

    def describe_configs(self, config_resources, include_synonyms=False):
        self.calls.append(("describe_configs", [r.name for r in config_resources]))
        return [SimpleNamespace(resources=[(0, None, 2, "t20", [("retention.ms", "1", False, 1, False, [])])])]

    def create_topics(self, new_topics, timeout_ms=None, validate_only=False):
        self.calls.append(("create_topics", [t.args for t in new_topics]))

    def delete_topics(self, topics, timeout_ms=None):
        self.calls.append(("delete_topics", topics))

    def create_partitions(self, topic_partitions, timeout_ms=None, validate_only=False):
        raise FakeErrors.IncompatibleBrokerVersion("Kafka broker does not support the 'CreatePartitionsRequest_v0'")

    def alter_configs(self, config_resources):
        self.calls.append(("alter_configs", [(r.name, r.configs) for r in config_resources]))
        return SimpleNamespace(resources=[(0, None, 2, config_resources[0].name)])


class Client3x(Client2x):
    def describe_configs(self, config_resources, include_synonyms=False, config_filter="modified"):
        self.calls.append(("describe_configs", config_filter))
        return {"topic": {"t20": {"retention.ms": {"value": "1", "config_source": "DYNAMIC_TOPIC_CONFIG"}}}}

    def alter_configs(self, config_resources, validate_only=False, raise_on_unknown=True, incremental=None):
        self.calls.append(("alter_configs", [(r.name, r.configs) for r in config_resources], raise_on_unknown))
        return {"topic": {config_resources[0].name: "OK"}}


@pytest.mark.parametrize("client_class", [Client2x, Client3x])
def test_reading_gives_topics_with_their_configs(client_class):
    admin = TopicAdmin(client_class(), FakeAdminModule, FakeErrors)
    assert admin.read(["t20", "missing"]) == {
        "t20": {
            "partitions": 2,
            "replication_factor": 1,
            "internal": False,
            "config": {"retention.ms": "1"},
            "overrides": ["retention.ms"],
        }
    }


def test_kafka_python_3_is_asked_for_every_config_not_only_overrides():
    client = Client3x()
    TopicAdmin(client, FakeAdminModule, FakeErrors).read(["t20"])
    assert ("describe_configs", "all") in client.calls


def _config_plan():
    config = {"retention.ms": "1", "segment.ms": "9", "x.y": "z"}
    actual = {"t": topic(config=config, overrides=["retention.ms", "x.y"])}
    return plan([{"name": "t", "config": {"retention.ms": 2, "segment.ms": 9}}], actual, purge_config=True)


def test_kafka_python_3_changes_configs_key_by_key():
    client = Client3x()
    TopicAdmin(client, FakeAdminModule, FakeErrors).apply(_config_plan())
    assert client.calls == [("alter_configs", [("t", {"retention.ms": "2", "x.y": ("DELETE", None)})], False)]


def test_kafka_python_2_sends_the_whole_set_of_overrides():
    client = Client2x()
    TopicAdmin(client, FakeAdminModule, FakeErrors).apply(_config_plan())
    assert client.calls == [("alter_configs", [("t", {"retention.ms": "2", "segment.ms": "9"})])]


def test_a_failed_step_names_what_was_already_done():
    client = Client2x()
    result = plan([{"name": "new", "partitions": 2}, {"name": "t20", "partitions": 3}], {"t20": topic(2)})
    with pytest.raises(BrokerError) as caught:
        TopicAdmin(client, FakeAdminModule, FakeErrors).apply(result)
    message = str(caught.value)
    assert message.startswith("raising t20 to 3 partitions (CreatePartitions): the broker does not support")
    assert message.endswith("(already done: created new)")
    assert client.calls == [("create_topics", [("new", 2, 1, {})])]


def test_deletes_happen_in_one_request():
    client = Client2x()
    result = plan([{"name": "a", "state": "absent"}, {"name": "b", "state": "absent"}], {"a": topic(), "b": topic()})
    assert TopicAdmin(client, FakeAdminModule, FakeErrors).apply(result) == ["deleted a, b"]
    assert client.calls == [("delete_topics", ["a", "b"])]
