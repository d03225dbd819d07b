"""The one error vocabulary of the plugin: every store, wrapper and the glue speak it.

Providers translate their SDK's exceptions into these classes through one table each and always
raise ``... from exc`` so the original cause stays in the traceback (but never in a message shown
to users: SDK messages can quote request headers).

The hierarchy::

    StoreError                      any failure of a storage operation
    ├── NotFound                    the object does not exist (and is also a FileNotFoundError)
    ├── BucketNotFound              the bucket/container itself does not exist (never a NotFound)
    ├── IntegrityError              the object exists but its bytes are not what was written
    │   ├── UnknownKeyError         encrypted with a master key id that is not configured
    │   └── WrongOwner              the object was written for another attachment (its recorded owner)
    │       └── OwnerlessObject     no owner record, modified after the owner mark (OwnerlessObjects)
    ├── NeedsRestore                the object is in a cold class (S3 GLACIER/DEEP_ARCHIVE, Azure Archive):
    │                               readable only after a restore
    ├── PermissionDenied            credentials refused for this operation
    └── StoreUnavailable            network error, timeout, throttling, 5xx after the SDK's retries
    ConfigError                     invalid configuration; stops Orthanc at start-up

Only ``NotFound`` is ever used as control flow (hybrid fallback, move job, legacy names): any other
error must surface to Orthanc so that a failed read is never mistaken for a missing file. A missing
bucket or container is therefore ``BucketNotFound``, on every provider: every object in it is
unreadable, and hybrid mode must not take that for "this file is on the other side".
"""

import os
import re


class StoreError(Exception):
    """A storage operation failed. ``key`` names the object involved, when there is one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class NotFound(StoreError, FileNotFoundError):
    """The object does not exist in this store."""


class BucketNotFound(StoreError):
    """The bucket or container does not exist (deleted, misspelt, or another account's): not a missing object."""


class IntegrityError(StoreError):
    """The object's bytes are damaged: truncated, tampered with, or not in the expected format."""


class UnknownKeyError(IntegrityError):
    """The object was encrypted under a master key id that is not configured."""


class WrongOwner(IntegrityError):
    """The object's recorded owner (metadata) is another attachment: it must never be served for this one."""


class OwnerlessObject(WrongOwner):
    """The object has no owner record and was modified after the store began recording owners (or the
    configuration refuses every such object): it may be another attachment's bytes put back without
    metadata. ``verify --deep --stamp`` proves it against Orthanc's MD5 and records its owner."""


class NeedsRestore(StoreError):
    """The object exists but sits in a storage class or tier that must be restored before it can be read.

    ``storage_class`` is the provider's name for it (``GLACIER``, ``DEEP_ARCHIVE``, ``Archive``);
    ``restoring`` is True when a restore was already asked for and is still running. The message names
    the object, the class and how to restore it (``POST /objstore/restore``). Never a ``NotFound``: hybrid
    mode must not look for the file on the other side, and a move must not take it for missing.
    """

    def __init__(self, message: str, key: str | None = None, storage_class: str = "", restoring: bool = False):
        super().__init__(message, key)
        self.storage_class = storage_class
        self.restoring = restoring


class PermissionDenied(StoreError):
    """The store refused the credentials for this operation (HTTP 401/403)."""


class NoCredentials(PermissionDenied):
    """No credentials could be had at all (a credential chain found none, or its identity service refused):
    nothing was sent to the store. At start-up this stops the plugin instead of being retried."""


class StoreUnavailable(StoreError):
    """The store could not be reached or kept failing (timeouts, 5xx, throttling) after retries."""


class ConfigError(Exception):
    """The configuration is invalid. ``problems`` holds one line per invalid option."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


_TOKEN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")  # a JWT, should an identity service's answer quote one
_CHAIN_NOISE = ("Visit https://", "To mitigate this issue", "Attempted credentials:", "DefaultAzureCredential failed")
_ENVIRONMENT_SECRETS = ("AZURE_CLIENT_SECRET", "IDENTITY_HEADER", "AZURE_CLIENT_CERTIFICATE_PASSWORD")


def chain_reason(exc: Exception) -> str:
    """An Azure credential chain's failure (DefaultAzureCredential) on one line: each credential's reason,
    links and advice left out, anything shaped like a token or equal to a secret of the environment hidden."""
    lines = [line.strip() for line in str(exc).splitlines()]
    text = "; ".join(line for line in lines if line and not line.startswith(_CHAIN_NOISE))
    text = _TOKEN.sub("(token hidden)", text)
    for name in _ENVIRONMENT_SECRETS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "(hidden)")
    return text or type(exc).__name__
