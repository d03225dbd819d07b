"""Master keys wrapped by a key-management service: a key file holding ``aws-kms:`` + base64 ciphertext.

At start-up (and in the offline tools) the ciphertext is sent to the service once; the 32-byte key it
returns lives in memory only, and nothing here ever puts it (or the ciphertext) in a message. Every
failure is one ``WrapError`` naming the service and the cause; the caller adds the key file's name.

Only AWS KMS is wired (boto3 is a dependency of the plugin): the usual credential chain (environment,
web identity, instance profile...), the region from ``AWS_REGION``/``AWS_DEFAULT_REGION``/the AWS config
file, and boto3's standard per-service endpoint variable ``AWS_ENDPOINT_URL_KMS``.
"""

import base64
import binascii
import os

from .keys import KEY_SIZE

AWS_KMS = "aws-kms:"
PREFIXES = (AWS_KMS,)
SERVICE_NAMES = {AWS_KMS: "AWS KMS"}
KMS_TIMEOUT = 10  # seconds per attempt: a key service that does not answer stops start-up, never hangs it


class WrapError(Exception):
    """The wrapped key could not be unwrapped; the message names the service and the cause, never the key."""


def wrapping(text: bytes) -> str | None:
    """The prefix (``"aws-kms:"``) when the key file's text is a wrapped key, else None."""
    stripped = text.strip()
    for prefix in PREFIXES:
        if stripped.startswith(prefix.encode()):
            return prefix
    return None


def unwrap(text: bytes) -> tuple[str, bytes]:
    """(service name, the 32-byte key) from a wrapped key file's text."""
    prefix = wrapping(text)
    if prefix is None:
        raise WrapError(f"not a wrapped key; allowed prefixes: {', '.join(PREFIXES)}")
    service = SERVICE_NAMES[prefix]
    body = b"".join(text.strip()[len(prefix):].split())
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise WrapError(f"{service}: the text after {prefix!r} is not valid base64 (it must be the base64 "
                        "CiphertextBlob that 'aws kms encrypt' returns)") from None
    if not blob:
        raise WrapError(f"{service}: no ciphertext after {prefix!r}")
    key = _aws_kms_decrypt(blob)
    if len(key) != KEY_SIZE:
        raise WrapError(f"{service}: the unwrapped key holds {len(key)} bytes; a master key is exactly "
                        f"{KEY_SIZE} bytes (encrypt the 32 raw bytes, e.g. 'aws kms encrypt --plaintext "
                        "fileb://key.bin')")
    return service, key


def _aws_kms_decrypt(blob: bytes) -> bytes:
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:  # pragma: no cover - boto3 is a dependency
        raise WrapError("AWS KMS: boto3 is not installed") from None
    try:
        # botocore reads AWS_DEFAULT_REGION and the config file; AWS_REGION (the SDKs' newer name) as well here
        region = None if os.environ.get("AWS_DEFAULT_REGION") else os.environ.get("AWS_REGION") or None
        client = boto3.client("kms", region_name=region, config=botocore.config.Config(
            connect_timeout=KMS_TIMEOUT, read_timeout=KMS_TIMEOUT, retries={"max_attempts": 2, "mode": "standard"}))
        answer = client.decrypt(CiphertextBlob=blob)
    except botocore.exceptions.NoRegionError:
        raise WrapError("AWS KMS: no region (set AWS_REGION or AWS_DEFAULT_REGION, or a region in the AWS "
                        "config file)") from None
    except botocore.exceptions.NoCredentialsError:
        raise WrapError("AWS KMS: no credentials found by the AWS credential chain (environment, web "
                        "identity, shared files, instance or container role)") from None
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "unknown")
        raise WrapError(f"AWS KMS refused to decrypt: {code}{_reason(code)}") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise WrapError(f"AWS KMS is unreachable at {exc.kwargs.get('endpoint_url', '?')}") from None
    except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
        raise WrapError(f"AWS KMS did not answer within {KMS_TIMEOUT} s") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise WrapError(f"AWS KMS: {type(exc).__name__}") from None
    return bytes(answer["Plaintext"])


_REASONS = {
    "DisabledException": " (the KMS key is disabled)",
    "KMSInvalidStateException": " (the KMS key is pending deletion or not usable)",
    "InvalidCiphertextException": " (the ciphertext is damaged or was not produced by this KMS)",
    "IncorrectKeyException": " (the ciphertext belongs to another KMS key)",
    "AccessDeniedException": " (these credentials may not use the KMS key: kms:Decrypt is needed)",
    "NotFoundException": " (the KMS key does not exist in this account and region)",
    "UnrecognizedClientException": " (the credentials are not valid)",
}


def _reason(code: str) -> str:
    return _REASONS.get(code, "")
