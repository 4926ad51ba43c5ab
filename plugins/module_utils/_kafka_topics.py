# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kafka topics as code: desired topics against a broker's topics, and a plan to reconcile them.

This is a private module_utils (leading underscore): no stable API.

Two halves:

* pure logic, unit-tested without a broker: ``normalize_topics`` checks the desired topics,
  ``plan_changes`` compares them with what a broker reports and returns a ``Plan`` (topics to
  create, configs to set or remove, partition counts to raise, topics to delete) or the list
  of changes Kafka cannot make (fewer partitions, another replication factor), which fail
  before anything is touched;
* ``TopicAdmin``, a thin adapter over kafka-python's ``KafkaAdminClient`` that reads the
  broker's state into plain dictionaries and carries a plan out.  It speaks to both client
  API generations in use: Debian/Ubuntu's python3-kafka 2.0.x (results are protocol response
  objects, configs are changed with AlterConfigs, which replaces a topic's whole set of
  overrides) and kafka-python 3.x from PyPI (results are dictionaries, configs are changed
  with IncrementalAlterConfigs).  Nothing here imports kafka-python: the module passes its
  ``kafka.admin`` and ``kafka.errors`` modules in.

Config values are compared as the broker reports them (strings): the desired value must be
the topic's effective value.  A value equal to the broker default is therefore already
satisfied, with or without a topic-level override.
"""

import inspect
import re

DEFAULT_PARTITIONS = 1
DEFAULT_REPLICATION_FACTOR = 1
STATES = ("present", "absent")
# Kafka's rule for topic names (kafka.common.internals.Topic): legal characters, at most 249.
_TOPIC_NAME_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}\Z")
_CONFIG_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_TOPIC_OPTIONS = ("name", "partitions", "replication_factor", "config", "state")
# DescribeConfigs config_source for a topic-level override (DYNAMIC_TOPIC_CONFIG).
_TOPIC_OVERRIDE_SOURCE = 1
_TOPIC_OVERRIDE_SOURCE_NAME = "DYNAMIC_TOPIC_CONFIG"
# ConfigResourceType.TOPIC in the protocol.
_RESOURCE_TYPE_TOPIC = 2


class KafkaTopicsError(ValueError):
    """A problem with the desired topics, or a change Kafka cannot make."""


class BrokerError(Exception):
    """The broker refused or failed a request; the message says which and why."""


def is_internal(name, reported_internal=False):
    """Kafka's own topics (__consumer_offsets, __transaction_state, ...) are never deleted or purged."""
    return bool(reported_internal) or name.startswith("__")


def config_value(value):
    """The string form Kafka uses for a config value given as YAML (bool, number, list or string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, (list, tuple)):
        return ",".join(config_value(v) for v in value)
    if isinstance(value, str):
        return value
    raise KafkaTopicsError(f"a config value must be a string, number, boolean or list, not {type(value).__name__}")


def comparable(value):
    """A config value as compared: list separators without surrounding blanks (``compact, delete``)."""
    if value is None:
        return None
    return ",".join(part.strip() for part in value.split(",")) if "," in value else value.strip()


def normalize_config(config, topic):
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise KafkaTopicsError(f"topic {topic}: config must be a dictionary of Kafka topic configs")
    result = {}
    for key, value in config.items():
        if not isinstance(key, str) or not _CONFIG_NAME_RE.match(key):
            raise KafkaTopicsError(f"topic {topic}: {key!r} is not a Kafka config name (like retention.ms)")
        if value is None:
            raise KafkaTopicsError(f"topic {topic}: config {key} has no value")
        result[key] = config_value(value)
    return result


def _positive_int(value, what, topic):
    if value is None:
        return None
    if isinstance(value, bool):
        raise KafkaTopicsError(f"topic {topic}: {what} must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise KafkaTopicsError(f"topic {topic}: {what} must be a whole number, not {value!r}") from None
    if number < 1 or str(number) != str(value).strip():
        raise KafkaTopicsError(f"topic {topic}: {what} must be a whole number of at least 1, not {value!r}")
    return number


def normalize_topic(item):
    """One desired topic as a dict with every key of ``_TOPIC_OPTIONS`` (``None`` = not managed)."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise KafkaTopicsError(f"a topic must be a name or a dictionary, not {type(item).__name__}")
    unknown = sorted(set(item) - set(_TOPIC_OPTIONS))
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise KafkaTopicsError("every topic needs a name")
    if unknown:
        raise KafkaTopicsError(f"topic {name}: unknown option(s) {', '.join(unknown)}; use {', '.join(_TOPIC_OPTIONS)}")
    if not _TOPIC_NAME_RE.match(name) or name in (".", ".."):
        raise KafkaTopicsError(
            f"{name!r} is not a valid Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most 249)"
        )
    state = item.get("state") or "present"
    if state not in STATES:
        raise KafkaTopicsError(f"topic {name}: state must be present or absent, not {state!r}")
    return {
        "name": name,
        "partitions": _positive_int(item.get("partitions"), "partitions", name),
        "replication_factor": _positive_int(item.get("replication_factor"), "replication_factor", name),
        "config": normalize_config(item.get("config"), name),
        "state": state,
    }


def normalize_topics(items):
    topics = [normalize_topic(item) for item in items or []]
    seen = set()
    for topic in topics:
        if topic["name"] in seen:
            raise KafkaTopicsError(f"topic {topic['name']} is listed more than once")
        seen.add(topic["name"])
    # Kafka refuses two topics whose names differ only by '.' versus '_' (metric names collide).
    collisions = {}
    for topic in topics:
        collisions.setdefault(topic["name"].replace(".", "_"), []).append(topic["name"])
    for names in collisions.values():
        if len(names) > 1:
            raise KafkaTopicsError(f"topics {' and '.join(names)} collide: Kafka treats '.' and '_' alike in names")
    return topics


class Plan:
    """What to change on the broker, in order: create, delete, raise partitions, change configs."""

    def __init__(self):
        self.create = []  # {name, partitions, replication_factor, config}
        self.delete = []  # names
        self.partitions = []  # {name, from, to}
        self.configs = []  # {name, set: {k: v}, remove: [k], overrides: {k: v} (the whole set afterwards)}
        self.unchanged = []  # names
        self.warnings = []
        self.errors = []
        self.before = {}
        self.after = {}

    @property
    def changed(self):
        return bool(self.create or self.delete or self.partitions or self.configs)

    def records(self):
        """One record per topic looked at, sorted by name: what happens to it (RV(topics) of the module)."""
        records = {}
        for spec in self.create:
            records[spec["name"]] = {
                "name": spec["name"],
                "action": "create",
                "partitions": spec["partitions"],
                "replication_factor": spec["replication_factor"],
                "config_set": sorted(spec["config"]),
            }
        for name in self.delete:
            records[name] = {"name": name, "action": "delete"}
        for change in self.partitions:
            record = records.setdefault(change["name"], {"name": change["name"], "action": "update"})
            record["partitions"] = change["to"]
            record["partitions_before"] = change["from"]
        for change in self.configs:
            record = records.setdefault(change["name"], {"name": change["name"], "action": "update"})
            record["config_set"] = sorted(change["set"])
            record["config_removed"] = list(change["remove"])
        for name in self.unchanged:
            records.setdefault(name, {"name": name, "action": "none"})
        return [records[name] for name in sorted(records)]


def _view(partitions, replication_factor, config):
    view = {"partitions": partitions, "replication_factor": replication_factor}
    if config:
        view["config"] = dict(sorted(config.items()))
    return view


def plan_changes(desired, actual, purge=False, purge_config=False):
    """Compare desired topics (``normalize_topics``) with the broker's (``TopicAdmin.read``).

    ``actual`` maps a topic name to ``{"partitions", "replication_factor", "internal",
    "config", "overrides"}``; ``config`` is ``{name: value}`` of every config the broker
    reported, or ``None`` when it reported none (configs then cannot be compared), and
    ``overrides`` the names that are topic-level overrides.

    Changes Kafka cannot make land in ``plan.errors``; the caller fails before changing anything.
    """
    plan = Plan()
    wanted = {topic["name"] for topic in desired}
    for topic in desired:
        name = topic["name"]
        current = actual.get(name)
        if topic["state"] == "absent":
            if current is None:
                plan.unchanged.append(name)
            elif is_internal(name, current.get("internal")):
                plan.errors.append(f"{name} is an internal Kafka topic; it is never deleted")
            else:
                plan.delete.append(name)
                plan.before[name] = _view(current["partitions"], current["replication_factor"], None)
                plan.after[name] = None
            continue
        if current is None:
            spec = {
                "name": name,
                "partitions": topic["partitions"] or DEFAULT_PARTITIONS,
                "replication_factor": topic["replication_factor"] or DEFAULT_REPLICATION_FACTOR,
                "config": dict(topic["config"]),
            }
            plan.create.append(spec)
            plan.before[name] = None
            plan.after[name] = _view(spec["partitions"], spec["replication_factor"], spec["config"])
            continue
        _plan_existing(plan, topic, current, purge_config)
    if purge:
        for name in sorted(actual):
            if name not in wanted and not is_internal(name, actual[name].get("internal")):
                plan.delete.append(name)
                plan.before[name] = _view(actual[name]["partitions"], actual[name]["replication_factor"], None)
                plan.after[name] = None
    return plan


def _plan_existing(plan, topic, current, purge_config):
    name = topic["name"]
    have, want = current["partitions"], topic["partitions"]
    changed = False
    if want is not None and want < have:
        plan.errors.append(
            f"{name} has {have} partitions and {want} are asked for: Kafka cannot remove partitions "
            f"(keep partitions: {have}, or delete the topic with state: absent and create it again, losing its data)"
        )
    elif want is not None and want > have:
        plan.partitions.append({"name": name, "from": have, "to": want})
        changed = True
    rf_have, rf_want = current["replication_factor"], topic["replication_factor"]
    if rf_want is not None and rf_want != rf_have:
        plan.errors.append(
            f"{name} has replication factor {rf_have} and {rf_want} is asked for: changing it needs a "
            "partition reassignment (kafka-reassign-partitions), which this module does not do"
        )
    reported = current.get("config")
    config_before, config_after = {}, {}
    if topic["config"] or purge_config:
        if reported is None:
            if topic["config"]:
                plan.warnings.append(
                    f"the broker reported no configuration for topic {name}, so its config cannot be compared; "
                    "left unchanged"
                )
        else:
            overrides = set(current.get("overrides") or ())
            to_set = {
                key: value
                for key, value in topic["config"].items()
                if comparable(reported.get(key)) != comparable(value)
            }
            to_remove = sorted(overrides - set(topic["config"])) if purge_config else []
            for key in sorted(set(topic["config"]) | set(to_remove)):
                if key in reported:
                    config_before[key] = reported[key]
            config_after = {k: v for k, v in config_before.items() if k not in to_remove}
            config_after.update(topic["config"])
            if to_set or to_remove:
                kept = {k: reported[k] for k in overrides if k in reported and k not in to_remove}
                kept.update(topic["config"])
                plan.configs.append(
                    {"name": name, "set": to_set, "remove": to_remove, "overrides": dict(sorted(kept.items()))}
                )
                changed = True
    if changed:
        plan.before[name] = _view(have, rf_have, config_before)
        plan.after[name] = _view(max(have, want or have), rf_have, config_after)
    else:
        plan.unchanged.append(name)


# ---------------------------------------------------------------------------------------------
# kafka-python adapter


def _get(item, *names, default=None):
    """A field of a kafka-python result: dictionaries (3.x) or protocol structs/tuples (2.x)."""
    for name in names:
        if isinstance(item, dict):
            if name in item:
                return item[name]
        elif hasattr(item, name):
            return getattr(item, name)
    return default


def parse_topic_descriptions(descriptions):
    """``describe_topics()`` of either client generation as ``{name: {partitions, replication_factor, internal}}``.

    2.x reports ``topic``/``partition``/``replicas``, 3.x ``name``/``partition_index``/``replica_nodes``.
    Topics reported with an error (for example unknown) are left out.
    """
    topics = {}
    for item in descriptions:
        name = _get(item, "name", "topic")
        if not name or _get(item, "error_code", default=0):
            continue
        partitions = _get(item, "partitions", default=[]) or []
        replication = max((len(_get(p, "replica_nodes", "replicas", default=[]) or []) for p in partitions), default=0)
        topics[name] = {
            "partitions": len(partitions),
            "replication_factor": replication,
            "internal": bool(_get(item, "is_internal", default=False)),
        }
    return topics


def _is_override(source):
    if isinstance(source, bool):  # DescribeConfigs v0: is_default
        return not source
    if isinstance(source, int):
        return source == _TOPIC_OVERRIDE_SOURCE
    return str(source) == _TOPIC_OVERRIDE_SOURCE_NAME


def parse_config_descriptions(result):
    """``describe_configs()`` output of either client generation as ``{topic: {"config", "overrides"}}``.

    3.x returns ``{"topic": {name: {key: {"value", "config_source", ...}}}}``; 2.x a list of
    DescribeConfigs responses whose ``resources`` are ``(error_code, error_message,
    resource_type, resource_name, config_entries)`` with entries ``(name, value, read_only,
    config_source or is_default, is_sensitive, ...)``.  A topic with no entries at all gets
    ``config: None`` (Apache Kafka always reports every topic config, defaults included).
    """
    parsed = {}
    if isinstance(result, dict):
        for name, entries in (result.get("topic") or {}).items():
            config, overrides = {}, []
            for key, entry in (entries or {}).items():
                config[key] = _get(entry, "value")
                if _is_override(_get(entry, "config_source", default=None)):
                    overrides.append(key)
            parsed[name] = {"config": config or None, "overrides": sorted(overrides)}
        return parsed
    responses = result if isinstance(result, (list, tuple)) else [result]
    for response in responses:
        for resource in _get(response, "resources", default=[]) or []:
            error_code, error_message, resource_type, name, entries = tuple(resource)[:5]
            if resource_type != _RESOURCE_TYPE_TOPIC:
                continue
            if error_code:
                raise BrokerError(f"DescribeConfigs for topic {name} failed: error {error_code} {error_message or ''}")
            config, overrides = {}, []
            for entry in entries or []:
                entry = tuple(entry)
                config[entry[0]] = entry[1]
                if _is_override(entry[3]):
                    overrides.append(entry[0])
            parsed[name] = {"config": config or None, "overrides": sorted(overrides)}
    return parsed


def check_alter_result(result, name):
    """Raise ``BrokerError`` unless an alter_configs result reports success for ``name``."""
    if isinstance(result, dict):  # 3.x: {"topic": {name: "OK" | error text}}
        outcome = (result.get("topic") or {}).get(name)
        if outcome != "OK":
            raise BrokerError(f"changing the config of topic {name} failed: {outcome}")
        return
    responses = result if isinstance(result, (list, tuple)) else [result]
    for response in responses:
        for resource in _get(response, "resources", default=[]) or []:
            error_code, error_message = tuple(resource)[:2]
            if error_code:
                raise BrokerError(
                    f"changing the config of topic {name} failed: error {error_code} {error_message or ''}".rstrip()
                )


def parse_cluster(description):
    """``describe_cluster()`` of either generation as ``{cluster_id, controller_id, brokers}``."""
    brokers = []
    for broker in _get(description, "brokers", default=[]) or []:
        brokers.append(
            {
                "id": _get(broker, "node_id", "broker_id"),
                "host": _get(broker, "host"),
                "port": _get(broker, "port"),
            }
        )
    return {
        "cluster_id": _get(description, "cluster_id"),
        "controller_id": _get(description, "controller_id"),
        "brokers": brokers,
    }


def _accepts(function, keyword):
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


class TopicAdmin:
    """Reads topics and carries out a ``Plan`` through a ``KafkaAdminClient``.

    ``admin_module`` is ``kafka.admin`` and ``errors_module`` is ``kafka.errors`` (passed in so
    that this file imports without kafka-python and can be tested with fakes).
    """

    def __init__(self, client, admin_module, errors_module, timeout_ms=30000):
        self.client = client
        self.kafka_admin = admin_module
        self.errors = errors_module
        self.timeout_ms = timeout_ms
        self.incremental = _accepts(client.alter_configs, "incremental")

    def _explain(self, error, what):
        incompatible = getattr(self.errors, "IncompatibleBrokerVersion", ())
        if incompatible and isinstance(error, incompatible):
            return BrokerError(f"{what}: the broker does not support the request kafka-python sends ({error})")
        return BrokerError(f"{what}: {type(error).__name__}: {error}")

    def cluster(self):
        try:
            return parse_cluster(self.client.describe_cluster())
        except Exception as e:
            raise self._explain(e, "reading the cluster description") from e

    def read(self, names=None):
        """Topics on the broker as ``plan_changes`` expects; configs only for ``names`` (existing ones)."""
        try:
            topics = parse_topic_descriptions(self.client.describe_topics())
        except Exception as e:
            raise self._explain(e, "listing topics") from e
        wanted = sorted(name for name in (names or ()) if name in topics)
        for name in topics:
            topics[name]["config"] = None
            topics[name]["overrides"] = []
        if wanted:
            for name, described in self.describe_configs(wanted).items():
                if name in topics:
                    topics[name].update(described)
        return topics

    def describe_configs(self, names):
        resources = [self.kafka_admin.ConfigResource(self.kafka_admin.ConfigResourceType.TOPIC, n) for n in names]
        try:
            if _accepts(self.client.describe_configs, "config_filter"):
                result = self.client.describe_configs(resources, config_filter="all")
            else:
                result = self.client.describe_configs(resources)
        except Exception as e:
            raise self._explain(e, f"reading the config of {', '.join(names)}") from e
        return parse_config_descriptions(result)

    def apply(self, plan):
        """Carry out ``plan``; returns the names of the steps done (for the error message of a later failure)."""
        done = []
        try:
            for spec in plan.create:
                self._create(spec)
                done.append(f"created {spec['name']}")
            if plan.delete:
                self._delete(plan.delete)
                done.append(f"deleted {', '.join(plan.delete)}")
            for change in plan.partitions:
                self._partitions(change)
                done.append(f"raised {change['name']} to {change['to']} partitions")
            for change in plan.configs:
                self._configs(change)
                done.append(f"changed the config of {change['name']}")
        except BrokerError as e:
            if done:
                raise BrokerError(f"{e} (already done: {'; '.join(done)})") from e
            raise
        return done

    def _create(self, spec):
        new_topic = self.kafka_admin.NewTopic(
            name=spec["name"],
            num_partitions=spec["partitions"],
            replication_factor=spec["replication_factor"],
            topic_configs=dict(spec["config"]),
        )
        try:
            self.client.create_topics([new_topic], timeout_ms=self.timeout_ms)
        except Exception as e:
            raise self._explain(e, f"creating topic {spec['name']}") from e

    def _delete(self, names):
        try:
            self.client.delete_topics(list(names), timeout_ms=self.timeout_ms)
        except Exception as e:
            raise self._explain(e, f"deleting topic(s) {', '.join(names)}") from e

    def _partitions(self, change):
        new_partitions = self.kafka_admin.NewPartitions(total_count=change["to"])
        try:
            self.client.create_partitions({change["name"]: new_partitions}, timeout_ms=self.timeout_ms)
        except Exception as e:
            raise self._explain(e, f"raising {change['name']} to {change['to']} partitions (CreatePartitions)") from e

    def _configs(self, change):
        name = change["name"]
        resource_type = self.kafka_admin.ConfigResourceType.TOPIC
        try:
            if self.incremental:
                # kafka-python >= 3: IncrementalAlterConfigs (SET and DELETE per key) where the broker has it.
                configs = dict(change["set"])
                for key in change["remove"]:
                    configs[key] = ("DELETE", None)
                resource = self.kafka_admin.ConfigResource(resource_type, name, configs=configs)
                result = self.client.alter_configs([resource], raise_on_unknown=False)
            else:
                # kafka-python 2.x: AlterConfigs replaces every override of the topic, so send the whole set.
                resource = self.kafka_admin.ConfigResource(resource_type, name, configs=dict(change["overrides"]))
                result = self.client.alter_configs([resource])
        except Exception as e:
            api = "IncrementalAlterConfigs" if self.incremental else "AlterConfigs"
            raise self._explain(e, f"changing the config of topic {name} ({api})") from e
        check_alter_result(result, name)
