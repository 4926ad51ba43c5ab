"""Unit tests for the batch/fallback fetch logic, with a fake Secrets Manager client.

They use the exception classes _secrets_fetch catches: botocore's when it is installed, its
stand-ins otherwise (ansible-test units does not install botocore).
"""

import pytest
from ansible_collections.ec2ops.stack.plugins.module_utils._secrets_env import normalize_specs
from ansible_collections.ec2ops.stack.plugins.module_utils._secrets_fetch import (
    BATCH_SIZE,
    BotoCoreError,
    ClientError,
    FetchAborted,
    FetchFailure,
    SecretValue,
    arn_region,
    fetch_secrets,
)

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-AbCdEf"

# Selected by `pytest -k dotenv` with the rest of the secrets_dotenv tests.
pytestmark = pytest.mark.secrets_dotenv


def client_error(code, message="", operation="GetSecretValue"):
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class FakeClient:
    """Secrets by name; records every call; ``batch`` may be an exception to raise, or False (no such method)."""

    def __init__(self, secrets, batch=None, errors=None, page_size=None):
        self.secrets = secrets
        self.errors = errors or {}
        self.batch = batch
        self.page_size = page_size
        self.calls = []

    def __getattribute__(self, name):
        if name == "batch_get_secret_value" and object.__getattribute__(self, "batch") is False:
            raise AttributeError(name)  # like a botocore release without BatchGetSecretValue
        return object.__getattribute__(self, name)

    def _value(self, name):
        return {
            "ARN": ARN.format(name),
            "Name": name,
            "VersionId": f"v-{name}",
            "VersionStages": ["AWSCURRENT"],
            "SecretString": self.secrets[name],
        }

    def _lookup(self, secret_id):
        for name in self.secrets:
            if secret_id in (name, ARN.format(name), ARN.format(name)[:-7]):
                return name
        return None

    def batch_get_secret_value(self, aws_retry=False, **kwargs):
        assert aws_retry is True
        self.calls.append(("batch", tuple(kwargs["SecretIdList"]), kwargs.get("NextToken")))
        if isinstance(self.batch, Exception):
            raise self.batch
        assert len(kwargs["SecretIdList"]) <= BATCH_SIZE
        values, errors = [], []
        for secret_id in kwargs["SecretIdList"]:
            if secret_id in self.errors:
                errors.append({"SecretId": secret_id, "ErrorCode": self.errors[secret_id][0], "Message": "m"})
            elif self._lookup(secret_id):
                values.append(self._value(self._lookup(secret_id)))
            else:
                errors.append({"SecretId": secret_id, "ErrorCode": "ResourceNotFoundException", "Message": "m"})
        if self.page_size:
            start = int(kwargs.get("NextToken") or 0)
            page = values[start : start + self.page_size]
            response = {"SecretValues": page, "Errors": errors if start == 0 else []}
            if start + self.page_size < len(values):
                response["NextToken"] = str(start + self.page_size)
            return response
        return {"SecretValues": values, "Errors": errors}

    def get_secret_value(self, aws_retry=False, **kwargs):
        assert aws_retry is True
        self.calls.append(("get", kwargs["SecretId"], kwargs.get("VersionId"), kwargs.get("VersionStage")))
        if kwargs["SecretId"] in self.errors:
            raise self.errors[kwargs["SecretId"]][1]
        name = self._lookup(kwargs["SecretId"])
        if name is None:
            raise client_error("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
        return self._value(name)


def specs(*entries):
    return normalize_specs(list(entries))


def strings(results):
    return {i: (r.string if isinstance(r, SecretValue) else r.kind) for i, r in results.items()}


def test_one_batch_call_for_up_to_twenty():
    client = FakeClient({f"s{i}": f"v{i}" for i in range(20)})
    results = fetch_secrets(client, specs(*[f"s{i}" for i in range(20)]))
    assert strings(results) == {i: f"v{i}" for i in range(20)}
    assert [c[0] for c in client.calls] == ["batch"]
    assert results[3].record("s3") == {
        "id": "s3",
        "arn": ARN.format("s3"),
        "name": "s3",
        "version_id": "v-s3",
        "version_stages": ["AWSCURRENT"],
    }


def test_chunks_of_twenty_and_duplicates_fetched_once():
    client = FakeClient({f"s{i}": f"v{i}" for i in range(45)})
    entries = [f"s{i}" for i in range(45)] + ["s0", {"id": "s1", "prefix": "X_"}]
    results = fetch_secrets(client, specs(*entries))
    assert results[45].string == "v0" and results[46].string == "v1"
    assert [len(c[1]) for c in client.calls] == [20, 20, 5]


def test_pagination_with_next_token():
    client = FakeClient({f"s{i}": f"v{i}" for i in range(5)}, page_size=2)
    results = fetch_secrets(client, specs(*[f"s{i}" for i in range(5)]))
    assert strings(results) == {i: f"v{i}" for i in range(5)}
    assert [c[2] for c in client.calls] == [None, "2", "4"]


def test_names_full_and_partial_arns_are_matched():
    client = FakeClient({"app/db": "x"})
    results = fetch_secrets(client, specs("app/db", ARN.format("app/db"), ARN.format("app/db")[:-7]))
    assert strings(results) == {0: "x", 1: "x", 2: "x"}
    assert [c[0] for c in client.calls] == ["batch"]


def test_pinned_versions_use_get_secret_value():
    client = FakeClient({"a": "x", "b": "y"})
    results = fetch_secrets(
        client,
        specs("a", {"id": "b", "version_stage": "AWSPREVIOUS"}, {"id": "b", "version_id": "v1"}),
    )
    assert strings(results) == {0: "x", 1: "y", 2: "y"}
    assert client.calls == [("batch", ("a",), None), ("get", "b", None, "AWSPREVIOUS"), ("get", "b", "v1", None)]


def test_only_pinned_makes_no_batch_call():
    client = FakeClient({"a": "x"})
    fetch_secrets(client, specs({"id": "a", "version_stage": "AWSCURRENT"}))
    assert [c[0] for c in client.calls] == ["get"]


@pytest.mark.parametrize(
    "batch",
    [
        False,  # botocore without BatchGetSecretValue
        client_error("AccessDeniedException", "not authorized to perform BatchGetSecretValue", "BatchGetSecretValue"),
        client_error("UnknownOperationException", "", "BatchGetSecretValue"),
        client_error("InvalidAction", "", "BatchGetSecretValue"),
    ],
)
def test_falls_back_to_get_secret_value(batch):
    client = FakeClient({"a": "x", "b": "y"}, batch=batch)
    results = fetch_secrets(client, specs("a", "b", "missing"))
    assert strings(results) == {0: "x", 1: "y", 2: "missing"}
    assert [c[0] for c in client.calls if c[0] == "get"] == ["get", "get", "get"]


def test_batch_errors_are_classified_per_secret():
    errors = {
        "gone": ("InvalidRequestException", None),
        "denied": ("AccessDeniedException", None),
        "kms": ("DecryptionFailure", None),
        "odd": ("SomethingElse", None),
    }
    client = FakeClient({"a": "x"}, errors=errors)
    results = fetch_secrets(client, specs("a", "missing", "denied", "kms", "odd"))
    assert strings(results) == {0: "x", 1: "missing", 2: "denied", 3: "decrypt", 4: "error"}
    assert [c[0] for c in client.calls] == ["batch"]


def test_get_secret_value_errors_are_classified():
    errors = {
        "gone": (
            None,
            client_error(
                "InvalidRequestException",
                "You can't perform this operation on the secret because it was marked for deletion.",
            ),
        ),
        "denied": (None, client_error("AccessDeniedException", "not authorized")),
        "bad": (None, client_error("InvalidParameterException", "bad parameter")),
    }
    client = FakeClient({}, batch=False, errors=errors)
    results = fetch_secrets(client, specs("gone", "denied", "bad"))
    assert strings(results) == {0: "deleted", 1: "denied", 2: "error"}
    assert results[0].describe() == "is deleted or scheduled for deletion (InvalidRequestException)"
    assert results[2].describe() == "cannot be read: InvalidParameterException: bad parameter"


@pytest.mark.parametrize("code", ["UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"])
def test_credential_errors_abort(code):
    client = FakeClient({"a": "x"}, batch=client_error(code, "", "BatchGetSecretValue"))
    with pytest.raises(FetchAborted, match=f"refused the credentials \\({code}\\)"):
        fetch_secrets(client, specs("a"))
    client = FakeClient({"a": "x"}, batch=False, errors={"a": (None, client_error(code))})
    with pytest.raises(FetchAborted):
        fetch_secrets(client, specs("a"))


def test_connection_errors_abort():
    error = BotoCoreError()
    with pytest.raises(FetchAborted, match="cannot reach Secrets Manager") as e:
        fetch_secrets(FakeClient({"a": "x"}, batch=error), specs("a"))
    assert e.value.__cause__ is error
    with pytest.raises(FetchAborted):
        fetch_secrets(FakeClient({"a": "x"}, batch=False, errors={"a": (None, error)}), specs("a"))


def test_unanswered_ids_are_fetched_one_by_one():
    class Forgetful(FakeClient):
        def batch_get_secret_value(self, aws_retry=False, **kwargs):
            self.calls.append(("batch", tuple(kwargs["SecretIdList"]), None))
            return {"SecretValues": [self._value("a")], "Errors": []}

    client = Forgetful({"a": "x", "b": "y"})
    assert strings(fetch_secrets(client, specs("a", "b"))) == {0: "x", 1: "y"}
    assert client.calls[1:] == [("get", "b", None, None)]


def test_failure_kinds():
    assert FetchFailure("ResourceNotFoundException").kind == "missing"
    assert FetchFailure("InvalidRequestException", "secret is scheduled for deletion").kind == "deleted"
    assert FetchFailure("InvalidRequestException", "other").kind == "error"
    assert FetchFailure(None).describe() == "cannot be read: Unknown"


def test_arn_region():
    assert arn_region(ARN.format("x")) == "us-east-1"
    assert arn_region("arn:aws-cn:secretsmanager:cn-north-1:1:secret:x") == "cn-north-1"
    assert arn_region("app/db") is None
    assert arn_region("arn:aws:s3:::bucket") is None
