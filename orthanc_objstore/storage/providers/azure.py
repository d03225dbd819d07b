"""Azure Blob Storage through azure-storage-blob.

The client is made from the ConnectionString (account key or SAS), or for an AccountUrl with
azure-identity's ``DefaultAzureCredential``, whose token the start-up check asks for once (``NoCredentials``
with the chain's reason when it finds no identity).

One ``ContainerClient`` is created at start-up and shared by all of Orthanc's threads (Azure SDK
clients are thread-safe; they share one requests session and its connection pool). Retries and
timeouts are the SDK's own: ``ExponentialRetry`` with ``MaxRetries`` attempts, ``ConnectTimeout``
and ``RequestTimeout`` on the transport. Blobs up to 8 MiB are written with one Put Blob, larger
ones as 4 MiB blocks (3 in parallel) committed at once by Put Block List (uncommitted blocks of a
failed upload are never readable and expire on their own). Each block in flight is a copy the SDK
makes: measured on a 200 MB blob, 4 MiB x 3 peaks at 0.07x the blob and 8 MiB x 4 at 0.17x, the SDK's
own default (4 MiB, one at a time) at 0.06x but 20% slower. Every upload carries an MD5 the service
checks.
A whole read is one GET for blobs up to 8 MiB; a larger blob comes in 8 MiB ranges, one after the
other, each written into the result as it arrives (one GET of a whole large blob costs two copies of it
inside the SDK: measured 2.0x the blob at peak against 1.1x in ranges, at the same speed). The ranges
after the first are pinned to the first answer's ETag, so a blob replaced during the read fails the read
instead of mixing two versions. Every read checks the length it received.
The owner (see ``protocol``) is blob metadata ``orthanc_attachment``, checked from the properties that
come with the download's first answer (no extra request), with its ``Last-Modified`` for the owner mark
(a blob ``<RootPath>/.orthanc-objstore-owners-since`` created with ``If-None-Match: *``). Every change to a
blob, its metadata included, moves its ``Last-Modified``: an old blob without the record whose metadata is
changed by another tool is refused until ``verify --deep --stamp`` records its owner.
"""

import logging

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ExponentialRetry, StandardBlobTier

from ...errors import (
    BucketNotFound,
    ConfigError,
    IntegrityError,
    NeedsRestore,
    NoCredentials,
    NotFound,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
    chain_reason,
)
from ..buffers import BufferReader
from ..protocol import (
    IN_PROGRESS,
    NOT_NEEDED,
    NOT_RESTORED,
    OWNER_MARK_TEXT,
    OWNER_METADATA_AZURE,
    ColdState,
    Owner,
    batch_failures,
    check_owner,
    read_exact_range,
)

log = logging.getLogger(__name__)

SINGLE_PUT_SIZE = 8 * 1024 * 1024
BLOCK_SIZE = 4 * 1024 * 1024
UPLOAD_CONCURRENCY = 3
READ_RANGE_SIZE = 8 * 1024 * 1024  # the first GET and each range after it

ARCHIVE_TIER = "Archive"  # the one tier that must be rehydrated before reads
REHYDRATE_TO_TIER = "Hot"  # where ``restore`` rehydrates a blob to (Azure keeps it there: no expiry)
RESTORE_TIERS = ("Standard", "High")  # Azure's rehydrate priorities
_NOT_FOUND_CODES = {"BlobNotFound", "ResourceNotFound"}
_DENIED_CODES = {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
                 "InsufficientAccountPermissions", "AccountIsDisabled", "AuthorizationResourceTypeMismatch"}


def _translate(exc: Exception, key: str, operation: str) -> StoreError:
    """The one table from azure-core's exceptions to the store's errors (messages never quote the SDK)."""
    where = f"Azure {operation} of {key!r}"
    code = getattr(exc, "error_code", None) or ""
    code = str(getattr(code, "value", code))  # the SDK's StorageErrorCode enum, or a plain string
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceNotFoundError) or code in _NOT_FOUND_CODES:
        if code == "ContainerNotFound":
            return BucketNotFound(f"{where}: the container does not exist", key)
        return NotFound(f"{where}: no such blob", key)
    if isinstance(exc, ClientAuthenticationError) and exc.response is None:  # the identity chain gave no token
        return NoCredentials(f"{where}: no token from the Azure identity chain ({chain_reason(exc)})", key)
    if isinstance(exc, ClientAuthenticationError) or code in _DENIED_CODES or status in (401, 403):
        return PermissionDenied(f"{where}: access denied ({code or status}); check the ConnectionString's "
                                "account key or SAS permissions, or the identity's role on the account (e.g. "
                                "Storage Blob Data Contributor)", key)
    if code == "BlobArchived":  # a read of a blob in the Archive tier, not rehydrated
        return NeedsRestore(f"{where}: the blob is in the access tier Archive and must be rehydrated before it "
                            "can be read; restore it with POST /objstore/restore (the resource's ids), or set "
                            "its tier to Hot or Cool, then read it again", key, ARCHIVE_TIER)
    if code == "BlobBeingRehydrated":
        return NeedsRestore(f"{where}: the blob is in the access tier Archive and is being rehydrated; read it "
                            "again when that is done (Azure takes up to 15 hours)", key, ARCHIVE_TIER, restoring=True)
    if code == "ConditionNotMet" or status == 412:  # a later range of a read no longer matches its ETag
        return StoreUnavailable(f"{where}: the blob was replaced while it was being read; read it again", key)
    if code == "InvalidRange" or status == 416:
        return IntegrityError(f"{where}: range past the end of the blob", key)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StoreUnavailable(f"{where}: the server is unreachable or the connection was cut "
                                f"({type(exc).__name__})", key)
    if isinstance(exc, HttpResponseError) and (status is None or status >= 500 or status in (408, 429)):
        return StoreUnavailable(f"{where}: the server kept failing ({code or status or type(exc).__name__})", key)
    return StoreError(f"{where}: {code or status or type(exc).__name__}", key)


def _check_owner(key, owner, downloader, owners_since=None) -> None:
    """The owner check on a download's properties (read from the first answer, before the rest of the data):
    the recorded owner, and the blob's Last-Modified against the owner mark's."""
    properties = downloader.properties
    check_owner(key, owner, (properties.metadata or {}).get(OWNER_METADATA_AZURE), "Azure",
                properties.last_modified, owners_since)


STORAGE_SCOPE = "https://storage.azure.com/.default"  # what the storage client asks the credential for


def _service_client(config) -> tuple[BlobServiceClient, object | None]:
    """(the client, its token credential or None): from the ConnectionString, or for ``account_url`` with
    azure-identity's DefaultAzureCredential (environment service principal, workload identity, managed
    identity, Azure CLI...). Errors never quote the connection string."""
    options = dict(retry_policy=ExponentialRetry(initial_backoff=0, increment_base=2, random_jitter_range=1,
                                                 retry_total=config.max_retries, retry_connect=config.max_retries,
                                                 retry_read=config.max_retries, retry_status=config.max_retries),
                   connection_timeout=config.connect_timeout, read_timeout=config.request_timeout,
                   max_single_put_size=SINGLE_PUT_SIZE, max_block_size=BLOCK_SIZE,
                   max_single_get_size=READ_RANGE_SIZE, max_chunk_get_size=READ_RANGE_SIZE)
    if config.connection_string is None:
        credential = _default_credential()
        try:
            return BlobServiceClient(config.account_url, credential=credential, **options), credential
        except (ValueError, AzureError):
            raise ConfigError(f"AzureBlobStorage.AccountUrl: {config.account_url!r} is not a usable blob "
                              "endpoint") from None
    try:
        return BlobServiceClient.from_connection_string(config.connection_string, **options), None
    except (ValueError, AzureError):
        # The SDK's message may quote the connection string: never repeat it.
        raise ConfigError("AzureBlobStorage.ConnectionString: (value hidden) is not a usable Azure "
                          "storage connection string") from None


def _default_credential():
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise ConfigError("AzureBlobStorage: AccountUrl/AccountName authenticate with azure-identity, which is not "
                          "installed (pip install 'orthanc-objstore[azure]'), or use ConnectionString") from None
    try:
        return DefaultAzureCredential()
    except ValueError as exc:  # e.g. AZURE_CLIENT_ID set to something that is not an application id
        raise ConfigError(f"AzureBlobStorage: the Azure credential chain cannot be built from this process's "
                          f"environment: {chain_reason(exc)}") from None


class _RawTier(str):
    """An access tier the SDK's StandardBlobTier lacks ("Premium"), sent as is, as the official plugin does."""

    @property
    def value(self) -> str:
        return str(self)


def _access_tier(name: str):
    try:
        return StandardBlobTier(name)
    except ValueError:
        return _RawTier(name)


def _cold_state(properties) -> ColdState:
    """The tier and rehydration state from a blob's properties (``archive_status``: rehydrate-pending-to-...)."""
    tier = str(getattr(properties.blob_tier, "value", properties.blob_tier) or "")
    if tier != ARCHIVE_TIER:
        return ColdState(tier, NOT_NEEDED)
    pending = str(properties.archive_status or "").startswith("rehydrate-pending")
    return ColdState(tier, IN_PROGRESS if pending else NOT_RESTORED)


class AzureStore:
    records_owner = True  # see store.owner_checks
    restore_tiers = RESTORE_TIERS  # see store.Restorable

    def __init__(self, config, service=None):
        """``config`` is a ``config.AzureConfig``; ``service`` replaces the BlobServiceClient (tests)."""
        self.container_name = config.container_name
        self._config = config
        self._credential = None
        if service is None:
            service, self._credential = _service_client(config)
        self.account = service.account_name
        self._container = service.get_container_client(config.container_name)
        self._upload_options = {"overwrite": True, "validate_content": True, "max_concurrency": UPLOAD_CONCURRENCY}
        if config.access_tier:
            self._upload_options["standard_blob_tier"] = _access_tier(config.access_tier)

    owners_since = None  # datetime: blobs without an owner record modified after it are refused (mark_owners)

    def mark_owners(self, key: str):
        """The server's Last-Modified of the mark ``key``, created (create-only: If-None-Match: *) when missing,
        so that every replica sharing the container gets the same time, from the server's clock."""
        blob = self._container.get_blob_client(key)
        try:
            try:
                return blob.get_blob_properties().last_modified
            except ResourceNotFoundError as exc:
                if isinstance(_translate(exc, key, "owner mark"), BucketNotFound):
                    raise
            try:
                blob.upload_blob(OWNER_MARK_TEXT, overwrite=False)
            except ResourceExistsError:
                pass  # another replica created it first; its time is the one
            return blob.get_blob_properties().last_modified
        except AzureError as exc:
            raise _translate(exc, key, "owner mark") from exc

    def object_version(self, key: str) -> str:
        """The blob's ETag: ``stamp_owner`` records an owner only on the version that was proven."""
        try:
            return self._container.get_blob_client(key).get_blob_properties().etag
        except AzureError as exc:
            raise _translate(exc, key, "version check") from exc

    def stamp_owner(self, key: str, owner: Owner, version: str) -> None:
        """Records ``owner`` on an existing blob without sending its bytes again (Set Blob Metadata, its other
        metadata kept), only if it is still ``version`` (its ETag); else ``StoreError``: it changed since."""
        blob = self._container.get_blob_client(key)
        try:
            properties = blob.get_blob_properties(etag=version, match_condition=MatchConditions.IfNotModified)
            metadata = {**(properties.metadata or {}), OWNER_METADATA_AZURE: owner.metadata_value()}
            blob.set_blob_metadata(metadata, etag=version, match_condition=MatchConditions.IfNotModified)
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 412:  # If-Match failed
                raise StoreError(f"Azure owner stamp of {key!r}: the blob changed since it was proven; "
                                 "not stamped (run verify --deep --stamp again)", key) from exc
            raise _translate(exc, key, "owner stamp") from exc

    def __repr__(self) -> str:
        return f"AzureStore(account={self.account!r}, container={self.container_name!r})"

    def check_bucket(self) -> None:
        """Start-up check: creates the container when CreateContainerIfNotExists, else requires it.

        Raises BucketNotFound when the container is missing and may not be created; other errors translated.
        """
        where = f"container {self.container_name!r}"
        self._check_credential()
        try:
            if self._config.create_container_if_not_exists:
                try:
                    self._container.create_container()
                except ResourceExistsError:
                    return
                log.warning("AzureBlobStorage: created the container %r in the account %r; check that it is "
                            "private (no anonymous public access)", self.container_name, self.account)
            else:
                self._container.get_container_properties()
        except ResourceNotFoundError as exc:  # a 404 to a container request is about the container
            raise BucketNotFound(f"the {where} does not exist", self.container_name) from exc
        except AzureError as exc:
            raise _translate(exc, self.container_name, "container check") from exc

    def _check_credential(self) -> None:
        """A token from the identity chain, asked once outside the client's retries, so that a chain that finds
        no identity stops start-up at once with its reason (NoCredentials). No-op with a ConnectionString."""
        if self._credential is None:
            return
        try:
            self._credential.get_token(STORAGE_SCOPE)
        except ClientAuthenticationError as exc:
            raise NoCredentials(f"no Azure identity for {self._config.account_url}: DefaultAzureCredential found "
                                f"no token ({chain_reason(exc)})", self.container_name) from None

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        metadata = {OWNER_METADATA_AZURE: owner.metadata_value()} if owner is not None else None
        try:
            # bytes as they are (the SDK shares them); any other buffer as a file, never copied whole
            body = data if isinstance(data, bytes) else BufferReader(data)
            self._container.upload_blob(key, body, length=len(data), metadata=metadata, **self._upload_options)
        except AzureError as exc:
            raise _translate(exc, key, "write") from exc

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        try:
            downloader = self._container.download_blob(key, max_concurrency=1)
            _check_owner(key, owner, downloader, self.owners_since)
            data = downloader.readall()
        except AzureError as exc:
            raise _translate(exc, key, "read") from exc
        if len(data) != downloader.size:
            raise StoreUnavailable(f"Azure read of {key!r}: got {len(data)} of {downloader.size} bytes", key)
        return data

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        def fetch() -> bytes:
            downloader = self._container.download_blob(key, offset=start, length=length, max_concurrency=1)
            _check_owner(key, owner, downloader, self.owners_since)
            return downloader.readall()

        return read_exact_range(key, start, length, fetch=fetch, head=self.head, sdk_errors=(AzureError,),
                                translate=_translate, where="Azure")

    def head(self, key: str) -> int:
        try:
            return self._container.get_blob_client(key).get_blob_properties().size
        except AzureError as exc:
            raise _translate(exc, key, "size check") from exc

    def delete(self, key: str) -> None:
        try:
            self._container.delete_blob(key)
        except AzureError as exc:
            error = _translate(exc, key, "delete")
            if not isinstance(error, NotFound):  # a missing blob is already deleted; a missing container is not
                raise error from exc

    def list_sizes(self, prefix: str = ""):
        """``Listing``: (key, size) of every blob whose key starts with ``prefix`` (adoption, offline tools)."""
        for key, size, _ in self.list_objects(prefix):
            yield key, size

    def list_objects(self, prefix: str = ""):
        """(key, size, last modified as a POSIX timestamp) of every blob under ``prefix`` (offline tools)."""
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix or None):
                yield blob.name, blob.size, blob.last_modified.timestamp()
        except AzureError as exc:
            raise _translate(exc, prefix, "listing") from exc

    max_batch = 256  # a blob batch's limit

    def delete_batch(self, keys) -> dict[str, StoreError]:
        """One blob batch request (``delete_blobs``); a missing blob counts as deleted."""
        if not keys:
            return {}
        try:
            responses = list(self._container.delete_blobs(*keys, raise_on_any_failure=False))
        except AzureError as exc:
            raise _translate(exc, keys[0], f"batch delete of {len(keys)} blobs starting with") from exc
        statuses = [getattr(response, "status_code", None) for response in responses]
        return batch_failures(keys, statuses, "Azure", "blob")

    def describe(self, key: str) -> str:
        return f"azure://{self.account}/{self.container_name}/{key}"

    def cold_state(self, key: str) -> ColdState:
        try:
            return _cold_state(self._container.get_blob_client(key).get_blob_properties())
        except AzureError as exc:
            raise _translate(exc, key, "access tier check") from exc

    def restore(self, key: str, days: int, tier: str) -> ColdState:
        """Rehydrates an archived blob to the Hot tier with priority ``tier`` (Set Blob Tier); ``days`` does not
        apply (a rehydrated blob stays Hot until its tier is changed again). Other blobs are not touched."""
        if tier not in RESTORE_TIERS:
            raise ValueError(f"rehydrate priority {tier!r}: Azure allows {', '.join(RESTORE_TIERS)}")
        state = self.cold_state(key)
        if state.restore != NOT_RESTORED:
            return state
        try:
            self._container.get_blob_client(key).set_standard_blob_tier(REHYDRATE_TO_TIER, rehydrate_priority=tier)
        except AzureError as exc:
            raise _translate(exc, key, "rehydration") from exc
        return self.cold_state(key)
