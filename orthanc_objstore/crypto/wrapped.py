"""Master keys wrapped by a key-management service: a key file holding a prefix, the key's name, the ciphertext.

    aws-kms:BASE64_CIPHERTEXT_BLOB
    azure-keyvault:KEY_IDENTIFIER [ALGORITHM] BASE64_WRAPPED_KEY    (ALGORITHM: RSA-OAEP-256 when absent)
    gcp-kms:projects/P/locations/L/keyRings/R/cryptoKeys/K BASE64_CIPHERTEXT

At start-up (and in the offline tools) the ciphertext is sent to the service once; the 32-byte key it
returns lives in memory only, and nothing here ever puts it (or the ciphertext) in a message. Every
failure is one ``WrapError`` naming the service and the cause; the caller adds the key file's name.

- AWS KMS (boto3, a dependency): the usual credential chain (environment, web identity, instance
  profile...), the region from ``AWS_REGION``/``AWS_DEFAULT_REGION``/the AWS config file, and boto3's
  per-service endpoint variable ``AWS_ENDPOINT_URL_KMS``.
- Azure Key Vault (extra ``azure-keyvault``: azure-keyvault-keys, azure-identity): ``unwrapKey`` on the key
  identifier's vault, authenticated by ``DefaultAzureCredential``.
- Google Cloud KMS (extra ``gcp-kms``: google-cloud-kms): ``Decrypt`` on the key, over REST, with the
  application-default credentials.

``SDK_OPTIONS`` holds extra keyword arguments for the Azure and Google clients; it is empty in production
(the tests put a fake transport and credential there: no emulator exists for these two services).
"""

import base64
import binascii
import os
from typing import Any

from ..errors import chain_reason
from .keys import KEY_SIZE

AWS_KMS = "aws-kms:"
AZURE_KEY_VAULT = "azure-keyvault:"
GCP_KMS = "gcp-kms:"
PREFIXES = (AWS_KMS, AZURE_KEY_VAULT, GCP_KMS)
SERVICE_NAMES = {AWS_KMS: "AWS KMS", AZURE_KEY_VAULT: "Azure Key Vault", GCP_KMS: "Google Cloud KMS"}
FORMATS = {AWS_KMS: "aws-kms:BASE64_CIPHERTEXT_BLOB ('aws kms encrypt')",
           AZURE_KEY_VAULT: "azure-keyvault:KEY_IDENTIFIER [ALGORITHM] BASE64_WRAPPED_KEY ('az keyvault key "
                            "encrypt' or wrapKey, algorithm RSA-OAEP-256 by default)",
           GCP_KMS: "gcp-kms:projects/P/locations/L/keyRings/R/cryptoKeys/K BASE64_CIPHERTEXT ('gcloud kms "
                    "encrypt')"}
AZURE_ALGORITHMS = ("RSA-OAEP-256", "RSA-OAEP", "RSA1_5", "A256KW", "A192KW", "A128KW", "CKM_AES_KEY_WRAP",
                    "CKM_AES_KEY_WRAP_PAD")
KMS_TIMEOUT = 10  # seconds per attempt: a key service that does not answer stops start-up, never hangs it
SDK_OPTIONS: dict[str, dict[str, Any]] = {AZURE_KEY_VAULT: {}, GCP_KMS: {}}


class WrapError(Exception):
    """The wrapped key could not be unwrapped; the message names the service and the cause, never the key."""


def wrapping(text: bytes) -> str | None:
    """The prefix (``"aws-kms:"``, ...) when the key file's text is a wrapped key, else None."""
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
    fields = text.strip()[len(prefix):].split()
    if prefix == AWS_KMS:
        key = _aws_kms_decrypt(_ciphertext(service, prefix, b"".join(fields)))
    elif prefix == AZURE_KEY_VAULT:
        key_id, algorithm, blob = _azure_fields(service, fields)
        key = _azure_key_vault_unwrap(key_id, algorithm, blob)
    else:
        if len(fields) != 2:
            raise WrapError(f"{service}: the key file must read {FORMATS[prefix]}")
        key = _gcp_kms_decrypt(fields[0].decode(errors="replace"), _ciphertext(service, prefix, fields[1]))
    if len(key) != KEY_SIZE:
        raise WrapError(f"{service}: the unwrapped key holds {len(key)} bytes; a master key is exactly "
                        f"{KEY_SIZE} bytes (wrap the 32 raw bytes, e.g. 'aws kms encrypt --plaintext "
                        "fileb://key.bin')")
    return service, key


def _ciphertext(service: str, prefix: str, body: bytes) -> bytes:
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise WrapError(f"{service}: the ciphertext is not valid base64; the key file must read "
                        f"{FORMATS[prefix]}") from None
    if not blob:
        raise WrapError(f"{service}: no ciphertext after {prefix!r}")
    return blob


def _azure_fields(service: str, fields: list[bytes]) -> tuple[str, str, bytes]:
    """(key identifier, algorithm, wrapped key) of an ``azure-keyvault:`` file."""
    if len(fields) not in (2, 3) or not fields[0].startswith(b"https://") or b"/keys/" not in fields[0]:
        raise WrapError(f"{service}: the key file must read {FORMATS[AZURE_KEY_VAULT]}, with a key identifier "
                        "such as https://VAULT.vault.azure.net/keys/NAME/VERSION")
    algorithm = fields[1].decode(errors="replace") if len(fields) == 3 else "RSA-OAEP-256"
    if algorithm not in AZURE_ALGORITHMS:
        raise WrapError(f"{service}: unknown wrapping algorithm {algorithm!r}; allowed: {', '.join(AZURE_ALGORITHMS)}")
    body = fields[-1].replace(b"-", b"+").replace(b"_", b"/")  # the Azure CLI may answer base64url
    return fields[0].decode(), algorithm, _ciphertext(service, AZURE_KEY_VAULT, body + b"=" * (-len(body) % 4))


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


def _azure_key_vault_unwrap(key_id: str, algorithm: str, blob: bytes) -> bytes:
    service = SERVICE_NAMES[AZURE_KEY_VAULT]
    try:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
    except ImportError:
        raise WrapError(f"{service}: azure-keyvault-keys is not installed (pip install "
                        "'orthanc-objstore[azure-keyvault]')") from None
    options = dict(SDK_OPTIONS[AZURE_KEY_VAULT])
    try:
        credential = options.pop("credential", None) or _default_azure_credential()
        client = CryptographyClient(key_id, credential, retry_total=1, connection_timeout=KMS_TIMEOUT,
                                    read_timeout=KMS_TIMEOUT, **options)
        return bytes(client.unwrap_key(KeyWrapAlgorithm(algorithm), blob).key)
    except ValueError:
        raise WrapError(f"{service}: {key_id!r} is not a Key Vault key identifier (https://VAULT.vault.azure.net/"
                        "keys/NAME/VERSION)") from None
    except ClientAuthenticationError as exc:
        if exc.response is None:  # the credential chain found no identity: nothing was sent to the vault
            raise WrapError(f"{service}: no Azure identity: DefaultAzureCredential found no token "
                            f"({chain_reason(exc)})") from None
        raise WrapError(f"{service} refused the identity: {_azure_code(exc)} (the token is not valid for this "
                        "vault's tenant)") from None
    except ResourceNotFoundError as exc:
        raise WrapError(f"{service} refused to unwrap: {_azure_code(exc)} (no such key or version in the "
                        "vault)") from None
    except ServiceRequestError:
        raise WrapError(f"{service} is unreachable at {key_id.split('/keys/', 1)[0]}") from None
    except ServiceResponseError:
        raise WrapError(f"{service} did not answer within {KMS_TIMEOUT} s") from None
    except HttpResponseError as exc:
        raise WrapError(f"{service} refused to unwrap: {_azure_code(exc)}{_azure_reason(exc)}") from None


def _default_azure_credential():
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise WrapError(f"{SERVICE_NAMES[AZURE_KEY_VAULT]}: azure-identity is not installed (pip install "
                        "'orthanc-objstore[azure-keyvault]')") from None
    try:
        return DefaultAzureCredential()
    except ValueError as exc:
        raise WrapError(f"{SERVICE_NAMES[AZURE_KEY_VAULT]}: the Azure credential chain cannot be built from "
                        f"this process's environment: {chain_reason(exc)}") from None


def _azure_code(exc) -> str:
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    code = getattr(error, "code", None) or str(exc.status_code)
    return f"{code}/{inner_code}" if inner_code else code


def _azure_reason(exc) -> str:
    text = f"{_azure_code(exc)} {getattr(getattr(exc, 'error', None), 'message', '') or ''}".lower()
    if "disabled" in text:
        return " (the key is disabled)"
    if exc.status_code == 403:
        return " (this identity may not unwrap with the key: the unwrapKey permission, e.g. the role Key Vault " \
               "Crypto User, is needed)"
    if exc.status_code == 400:
        return " (the wrapped key is damaged, was wrapped by another key, or with another algorithm)"
    return ""


def _gcp_kms_decrypt(name: str, blob: bytes) -> bytes:
    service = SERVICE_NAMES[GCP_KMS]
    try:
        import google.auth.exceptions
        import requests
        from google.api_core import exceptions, retry
        from google.cloud import kms
    except ImportError:
        raise WrapError(f"{service}: google-cloud-kms is not installed (pip install "
                        "'orthanc-objstore[gcp-kms]')") from None
    if not name.startswith("projects/") or "/cryptoKeys/" not in name:
        raise WrapError(f"{service}: {name!r} is not a key name; the key file must read {FORMATS[GCP_KMS]}")
    busy = retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.InternalServerError,
                                   exceptions.TooManyRequests)  # a refused connection is reported at once
    try:
        client = kms.KeyManagementServiceClient(transport="rest", **SDK_OPTIONS[GCP_KMS])
        answer = client.decrypt(request={"name": name, "ciphertext": blob}, timeout=KMS_TIMEOUT,
                                retry=retry.Retry(predicate=busy, initial=0.5, maximum=2, timeout=2 * KMS_TIMEOUT))
    except google.auth.exceptions.DefaultCredentialsError:
        raise WrapError(f"{service}: no application-default credentials (GOOGLE_APPLICATION_CREDENTIALS, "
                        "workload identity, the metadata server or 'gcloud auth application-default login')") from None
    except (google.auth.exceptions.GoogleAuthError, requests.exceptions.RequestException) as exc:
        if isinstance(exc, requests.exceptions.Timeout):
            raise WrapError(f"{service} did not answer within {KMS_TIMEOUT} s") from None
        raise WrapError(f"{service} is unreachable at {client.api_endpoint} ({type(exc).__name__})") from None
    except exceptions.RetryError:
        raise WrapError(f"{service} kept failing for {2 * KMS_TIMEOUT} s") from None
    except exceptions.GoogleAPICallError as exc:
        status = _gcp_status(exc)
        raise WrapError(f"{service} refused to decrypt: {status}{_GCP_REASONS.get(status, '')}") from None
    return bytes(answer.plaintext)


def _gcp_status(exc) -> str:
    """The error's canonical status (INVALID_ARGUMENT...) from its JSON body; over REST the exception's class
    only says the HTTP status (400 is both a bad ciphertext and a disabled key)."""
    try:
        return str(exc.response.json()["error"]["status"])
    except Exception:  # noqa: BLE001 - no JSON body: the class says what is known
        return type(exc).__name__


_GCP_REASONS = {
    "INVALID_ARGUMENT": " (the ciphertext is damaged or was not produced by this key)",
    "FAILED_PRECONDITION": " (the key version is disabled, destroyed or not usable)",
    "PERMISSION_DENIED": " (these credentials may not use the key: cloudkms.cryptoKeyVersions.useToDecrypt is "
                         "needed, e.g. the role Cloud KMS CryptoKey Decrypter)",
    "NOT_FOUND": " (no such key in this project, location and key ring)",
    "UNAUTHENTICATED": " (the credentials are not valid)",
}
