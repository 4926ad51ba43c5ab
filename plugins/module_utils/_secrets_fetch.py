# Copyright (c) ec2ops.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch many Secrets Manager secrets with as few calls as possible.

This is a private module_utils (leading underscore): no stable API.

Secrets without a pinned version go through BatchGetSecretValue, 20 ids per
call (the API maximum).  Pinned versions (version_id / version_stage), ids a
batch answer does not account for, and every id when the batch API is not
available (older botocore, an endpoint without it, or AccessDenied because
the policy grants only GetSecretValue) use GetSecretValue.  The client is the
one ``AnsibleAWSModule.client(..., retry_decorator=AWSRetry.jittered_backoff())``
returns, so every call passes ``aws_retry=True`` and throttling is retried with
backoff.

Per-secret problems come back as ``FetchFailure`` records; problems that
concern every secret (no connection, bad credentials) raise ``FetchAborted``.
Nothing here handles or reports a secret value.
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports the missing SDK; these keep the module importable and testable.

    class BotoCoreError(Exception):
        """Stand-in for botocore.exceptions.BotoCoreError."""

    class ClientError(Exception):
        """Stand-in for botocore.exceptions.ClientError (same constructor and ``response``)."""

        def __init__(self, error_response, operation_name):
            super().__init__(f"{error_response.get('Error', {}).get('Code')} ({operation_name})")
            self.response = error_response
            self.operation_name = operation_name


BATCH_SIZE = 20
# Errors that concern the caller, not a secret: retrying secret by secret cannot help.
GLOBAL_ERROR_CODES = frozenset(
    (
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "AuthFailure",
    )
)
_KIND_TEXT = {
    "missing": "does not exist",
    "deleted": "is deleted or scheduled for deletion",
    "denied": "cannot be read: access denied",
    "decrypt": "cannot be decrypted with its KMS key",
}


class SecretValue:
    """What GetSecretValue / BatchGetSecretValue returned for one secret."""

    __slots__ = ("arn", "binary", "name", "string", "version_id", "version_stages")

    def __init__(self, response):
        self.arn = response.get("ARN")
        self.name = response.get("Name")
        self.version_id = response.get("VersionId")
        self.version_stages = list(response.get("VersionStages") or [])
        self.string = response.get("SecretString")
        self.binary = response.get("SecretBinary")

    def record(self, secret_id):
        """The part a release may log: which secret version was used (no value)."""
        return {
            "id": secret_id,
            "arn": self.arn,
            "name": self.name,
            "version_id": self.version_id,
            "version_stages": self.version_stages,
        }


class FetchFailure:
    """Why one secret could not be read: ``kind`` is missing, deleted, denied, decrypt or error."""

    __slots__ = ("code", "kind", "message")

    def __init__(self, code, message=None):
        self.code = code or "Unknown"
        self.message = message or ""
        lowered = self.message.lower()
        if self.code == "ResourceNotFoundException":
            self.kind = "missing"
        elif self.code == "InvalidRequestException" and "delet" in lowered:
            self.kind = "deleted"
        elif self.code in ("AccessDeniedException", "AccessDenied"):
            self.kind = "denied"
        elif self.code == "DecryptionFailure":
            self.kind = "decrypt"
        else:
            self.kind = "error"

    def describe(self):
        """Reason text for a message: AWS's own text only for unexpected errors (it names no value)."""
        if self.kind in _KIND_TEXT:
            return f"{_KIND_TEXT[self.kind]} ({self.code})"
        return f"cannot be read: {self.code}: {self.message}".rstrip(": ")


class FetchAborted(Exception):
    """A failure that concerns every secret (connection, credentials, region)."""


def arn_region(secret_id):
    """The region part of a secret ARN, or None for a plain name."""
    parts = secret_id.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager":
        return parts[3] or None
    return None


def fetch_secrets(client, specs):
    """``{spec.index: SecretValue | FetchFailure}`` for every spec (see the module docstring)."""
    batchable = []
    singles = {}
    for spec in specs:
        if spec.pinned:
            singles.setdefault((spec.id, spec.version_id, spec.version_stage), []).append(spec)
        elif spec.id not in batchable:
            batchable.append(spec.id)

    by_id = _batch_fetch(client, batchable) if batchable else {}
    for secret_id in batchable:
        if secret_id not in by_id:
            by_id[secret_id] = _single_fetch(client, secret_id)
    results = {}
    for spec in specs:
        if not spec.pinned:
            results[spec.index] = by_id[spec.id]
    for (secret_id, version_id, version_stage), group in singles.items():
        result = _single_fetch(client, secret_id, version_id, version_stage)
        for spec in group:
            results[spec.index] = result
    return results


def _batch_fetch(client, ids):
    """What BatchGetSecretValue tells about ``ids``; ids it says nothing about are left out."""
    found = {}
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        token = None
        while True:
            kwargs = {"SecretIdList": chunk}
            if token:
                kwargs["NextToken"] = token
            try:
                response = client.batch_get_secret_value(aws_retry=True, **kwargs)
            except AttributeError:
                return found  # botocore too old for BatchGetSecretValue
            except ClientError as e:
                code = _error_code(e)
                if code in GLOBAL_ERROR_CODES:
                    raise FetchAborted(f"Secrets Manager refused the credentials ({code})") from e
                return found  # not supported here / not allowed: GetSecretValue per secret
            except BotoCoreError as e:
                raise FetchAborted("cannot reach Secrets Manager") from e
            for item in response.get("SecretValues") or []:
                for secret_id in chunk:
                    if secret_id not in found and _matches(secret_id, item):
                        found[secret_id] = SecretValue(item)
            for error in response.get("Errors") or []:
                secret_id = error.get("SecretId")
                if secret_id in chunk and secret_id not in found:
                    found[secret_id] = FetchFailure(error.get("ErrorCode"), error.get("Message"))
            token = response.get("NextToken")
            if not token:
                break
    return found


def _single_fetch(client, secret_id, version_id=None, version_stage=None):
    kwargs = {"SecretId": secret_id}
    if version_id:
        kwargs["VersionId"] = version_id
    if version_stage:
        kwargs["VersionStage"] = version_stage
    try:
        return SecretValue(client.get_secret_value(aws_retry=True, **kwargs))
    except ClientError as e:
        code = _error_code(e)
        if code in GLOBAL_ERROR_CODES:
            raise FetchAborted(f"Secrets Manager refused the credentials ({code})") from e
        return FetchFailure(code, e.response.get("Error", {}).get("Message"))
    except BotoCoreError as e:
        raise FetchAborted("cannot reach Secrets Manager") from e


def _error_code(error):
    return (getattr(error, "response", None) or {}).get("Error", {}).get("Code")


def _matches(secret_id, item):
    """Whether a batch result answers the requested id (name, full ARN or ARN without its 6-character suffix)."""
    arn = item.get("ARN") or ""
    if secret_id in (item.get("Name"), arn):
        return True
    return secret_id.startswith("arn:") and arn.startswith(secret_id + "-") and len(arn) == len(secret_id) + 7
