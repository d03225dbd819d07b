"""Google Cloud Storage through google-cloud-storage.

One ``Client`` (and its ``Bucket``) is created at start-up and shared by all of Orthanc's threads;
its HTTP session gets a connection pool sized for them. Credentials: the ServiceAccountFile when
given, else an emulator (STORAGE_EMULATOR_HOST, anonymous), else application-default credentials.
Retries and timeouts are the SDK's own: ``DEFAULT_RETRY`` bounded by ``RetryTimeout`` seconds, and
``(ConnectTimeout, RequestTimeout)`` on every request. Objects up to 8 MiB are one multipart upload,
larger ones a resumable upload in 32 MiB chunks; an object becomes visible only once complete. The SDK
copies each chunk (google-crc32c takes only ``bytes``), so the chunk size is the memory a write adds:
32 MiB instead of the SDK's 100 MiB default, which is a whole copy of anything smaller (measured on a
200 MB instance through Orthanc: 0.34x the file against 1.0x; fake-gcs-server charges each chunk about
60 ms, so puts there run at about 0.8 of the default's speed).
A whole read is one GET whose CRC32C/MD5 the SDK checks; a range read checks its length.

The owner (see ``protocol``) is object metadata ``orthanc-attachment``. fake-gcs-server answers a media
download with it as the header ``x-goog-meta-orthanc-attachment`` (measured; Cloud Storage's own answer
is not checked here), read through the SDK's private ``_extract_headers_from_download`` hook, so a read
checks it without an extra request. When that header is absent (an object without the record, a server
that does not send it, an SDK that no longer calls the hook) the metadata is asked once, pinned to the
generation that was downloaded (``ifGenerationMatch``): still checked, at one small request more.
That request also gives the age the owner mark is compared with (``OwnerlessObjects``): the generation's
``timeCreated`` (a new upload is a new generation; a metadata update does not change it), against the
mark's (``<RootPath>/.orthanc-objstore-owners-since``, created with ``ifGenerationMatch=0``). The SDK
keeps no time from a media download, so an object without the record costs that request as before, and
an object with the record costs none.

A 404 does not always say whether the object or the bucket is missing. Google Cloud Storage's answers
usually say "No such object: …" or "The specified bucket does not exist." (not documented: its
status-code page shows only "Not Found"); fake-gcs-server says "Not Found" for both. When the words do
not tell, the bucket is asked (one object listing, which object-level roles allow), so an unexpected
wording costs a request, never a wrong answer.
"""

import logging
from collections.abc import Callable

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import exceptions as storage_exceptions
from google.cloud.storage.retry import DEFAULT_RETRY
from requests.adapters import HTTPAdapter

from ...errors import (
    BucketNotFound,
    ConfigError,
    IntegrityError,
    NotFound,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
)
from ..buffers import as_file
from ..protocol import OWNER_MARK_TEXT, OWNER_METADATA, Owner, batch_failures, check_owner, read_exact_range

CHUNK_SIZE = 32 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require
POOL_SIZE = 64
log = logging.getLogger("orthanc_objstore")
UNBATCHED = 16  # keys a drainer's thread takes at a time when the server has no batch requests
_EMULATOR_PROJECT = "orthanc-objstore"


def _not_found(exc: Exception, key: str, where: str, bucket_exists: Callable[[], bool]) -> StoreError:
    """A 404: NotFound for a missing object, BucketNotFound for a missing bucket (see the module docstring)."""
    words = str(exc).lower()
    if "bucket does not exist" in words or ("no such object" not in words and not bucket_exists()):
        return BucketNotFound(f"{where}: the bucket does not exist", key)
    return NotFound(f"{where}: no such object", key)


def _translate(exc: Exception, key: str, operation: str,
               bucket_exists: Callable[[], bool] = lambda: True) -> StoreError:
    """The one table from google-cloud's exceptions to the store's errors (messages never quote the SDK).
    ``bucket_exists`` is asked only when a 404 does not say what is missing."""
    where = f"GCS {operation} of {key!r}"
    if isinstance(exc, api_exceptions.RetryError):
        cause = exc.cause if isinstance(exc.cause, Exception) else None
        detail = f" ({type(cause).__name__})" if cause else ""
        return StoreUnavailable(f"{where}: still failing when the retries ran out{detail}", key)
    if isinstance(exc, api_exceptions.NotFound):
        return _not_found(exc, key, where, bucket_exists)
    if isinstance(exc, (api_exceptions.Forbidden, api_exceptions.Unauthorized, auth_exceptions.RefreshError,
                        auth_exceptions.DefaultCredentialsError)):
        return PermissionDenied(f"{where}: access denied ({type(exc).__name__}); check the credentials and "
                                "their roles on the bucket", key)
    if isinstance(exc, api_exceptions.RequestRangeNotSatisfiable):
        return IntegrityError(f"{where}: range past the end of the object", key)
    if isinstance(exc, storage_exceptions.DataCorruption):
        return StoreUnavailable(f"{where}: the bytes received do not match the object's checksum", key)
    if isinstance(exc, storage_exceptions.InvalidResponse):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 404:
            return _not_found(exc, key, where, bucket_exists)
        if status == 416:
            return IntegrityError(f"{where}: range past the end of the object", key)
        if status in (401, 403):
            return PermissionDenied(f"{where}: access denied ({status})", key)
        return StoreUnavailable(f"{where}: unexpected answer from the server ({status})", key)
    if isinstance(exc, (api_exceptions.ServerError, api_exceptions.TooManyRequests, requests.RequestException,
                        auth_exceptions.TransportError, ConnectionError)):
        return StoreUnavailable(f"{where}: the server is unreachable or kept failing ({type(exc).__name__})", key)
    return StoreError(f"{where}: {type(exc).__name__}", key)


_SDK_ERRORS = (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, storage_exceptions.InvalidResponse,
               storage_exceptions.DataCorruption, requests.RequestException, ConnectionError)


def _client(config) -> storage.Client:
    """The one client, with credentials chosen as the module docstring says."""
    if config.service_account_file:
        try:
            return storage.Client.from_service_account_json(config.service_account_file)
        except (OSError, ValueError, auth_exceptions.GoogleAuthError):
            raise ConfigError(f"GoogleCloudStorage.ServiceAccountFile: {config.service_account_file!r} is not a "
                              "usable service-account key file") from None
    if config.emulator_host:
        return storage.Client(project=config.project or _EMULATOR_PROJECT, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": config.emulator_host})
    try:
        return storage.Client(project=config.project)
    except auth_exceptions.DefaultCredentialsError:
        raise ConfigError("GoogleCloudStorage: no ServiceAccountFile is configured and no application-default "
                          "credentials were found (set ServiceAccountFile, or GOOGLE_APPLICATION_CREDENTIALS, or "
                          "run on Google Cloud with a service account attached)") from None


_OWNER_HEADER = "x-goog-meta-" + OWNER_METADATA


class _OwnedBlob(storage.Blob):
    """A blob that keeps the owner header of its last media download (the SDK keeps only some headers)."""

    downloaded_owner: str | None = None

    def _extract_headers_from_download(self, response):
        super()._extract_headers_from_download(response)
        self.downloaded_owner = response.headers.get(_OWNER_HEADER)


class GcsStore:
    records_owner = True  # see store.owner_checks

    def __init__(self, config, client=None):
        """``config`` is a ``config.GcsConfig``; ``client`` replaces the storage.Client (tests)."""
        self.bucket_name = config.bucket_name
        self._config = config
        self._client = client or _client(config)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        for scheme in ("https://", "http://"):
            self._client._http.mount(scheme, adapter)
        self._bucket = self._client.bucket(config.bucket_name)
        self._timeout = (config.connect_timeout, config.request_timeout)
        self._retry = DEFAULT_RETRY.with_timeout(config.retry_timeout) if config.retry_timeout else None

    def __repr__(self) -> str:
        where = self._config.emulator_host or "Google Cloud"
        return f"GcsStore(bucket={self.bucket_name!r}, endpoint={where!r})"

    def check_bucket(self) -> None:
        """Raises BucketNotFound when the bucket does not exist; other errors propagate translated."""
        try:
            exists = self._bucket.exists(timeout=self._timeout, retry=self._retry)
        except _SDK_ERRORS as exc:
            raise _translate(exc, self.bucket_name, "bucket check") from exc
        if not exists:
            raise BucketNotFound(f"the bucket {self.bucket_name!r} does not exist", self.bucket_name)

    def _bucket_exists(self) -> bool:
        """Whether the bucket exists, asked after a 404 that does not say. When it cannot be checked the
        answer is yes: the 404 stays a NotFound, as the object's request said."""
        try:
            list(self._client.list_blobs(self.bucket_name, max_results=1, timeout=self._timeout, retry=self._retry))
        except api_exceptions.NotFound:
            return False
        except _SDK_ERRORS:
            return True
        return True

    owners_since = None  # datetime: objects without an owner record created after it are refused (mark_owners)

    def mark_owners(self, key: str):
        """The server's timeCreated of the mark ``key``, created (create-only: ifGenerationMatch=0) when
        missing, so that every replica sharing the bucket gets the same time, from the server's clock."""
        mark = self._bucket.blob(key)
        try:
            try:
                mark.reload(timeout=self._timeout, retry=self._retry)
                return mark.time_created
            except api_exceptions.NotFound as exc:
                if isinstance(self._error(exc, key, "owner mark"), BucketNotFound):
                    raise
            try:
                self._bucket.blob(key).upload_from_string(OWNER_MARK_TEXT, if_generation_match=0,
                                                          timeout=self._timeout, retry=self._retry)
            except api_exceptions.PreconditionFailed:
                pass  # another replica created it first: its time is the one
            mark.reload(timeout=self._timeout, retry=self._retry)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "owner mark") from exc
        return mark.time_created

    def object_version(self, key: str) -> str:
        """The object's generation: ``stamp_owner`` records an owner only on the version that was proven."""
        blob = self._bucket.blob(key)
        try:
            blob.reload(timeout=self._timeout, retry=self._retry)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "version check") from exc
        return str(blob.generation)

    def stamp_owner(self, key: str, owner: Owner, version: str) -> None:
        """Records ``owner`` on an existing object without sending its bytes again (a metadata patch, its
        other metadata kept), only if it is still generation ``version``; else ``StoreError``: it changed."""
        blob = self._bucket.blob(key)
        blob.metadata = {OWNER_METADATA: owner.metadata_value()}
        try:
            blob.patch(if_generation_match=int(version), timeout=self._timeout, retry=self._retry)
        except api_exceptions.PreconditionFailed as exc:
            raise StoreError(f"GCS owner stamp of {key!r}: the object changed since it was proven; not stamped "
                             "(run verify --deep --stamp again)", key) from exc
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "owner stamp") from exc

    def _error(self, exc: Exception, key: str, operation: str) -> StoreError:
        """``_translate``, with this store's bucket to ask when a 404 is ambiguous."""
        return _translate(exc, key, operation, self._bucket_exists)

    def _blob(self, key: str):
        return self._bucket.blob(key, chunk_size=CHUNK_SIZE)

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        blob = self._blob(key)
        if owner is not None:
            blob.metadata = {OWNER_METADATA: owner.metadata_value()}
        try:
            # what upload_from_string does, with any buffer (not only bytes) and no copy of it
            blob.upload_from_file(as_file(data), size=len(data), content_type="application/octet-stream",
                                  timeout=self._timeout, retry=self._retry)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "write") from exc

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        blob = _OwnedBlob(key, self._bucket)
        try:
            data = blob.download_as_bytes(timeout=self._timeout, retry=self._retry)
            self._check_owner(key, owner, blob)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "read") from exc
        return data

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        def fetch() -> bytes:
            blob = _OwnedBlob(key, self._bucket)
            data = blob.download_as_bytes(start=start, end=start + length - 1,
                                          timeout=self._timeout, retry=self._retry)
            self._check_owner(key, owner, blob)
            return data

        return read_exact_range(key, start, length, fetch=fetch, head=self.head, sdk_errors=_SDK_ERRORS,
                                translate=self._error, where="GCS")

    def _check_owner(self, key: str, owner: Owner | None, blob: _OwnedBlob) -> None:
        """The owner check after a download: from its header, else from the metadata of that generation
        (which also gives its timeCreated, for the owner mark). A download without a generation has no
        known age: refused when there is a mark."""
        if owner is None:
            return
        recorded, created = blob.downloaded_owner, None
        if recorded is None and blob.generation is not None:
            described = self._bucket.blob(key)
            described.reload(if_generation_match=int(blob.generation), timeout=self._timeout, retry=self._retry)
            recorded, created = (described.metadata or {}).get(OWNER_METADATA), described.time_created
        check_owner(key, owner, recorded, "GCS", created, self.owners_since)

    def head(self, key: str) -> int:
        blob = self._bucket.blob(key)
        try:
            blob.reload(timeout=self._timeout, retry=self._retry)  # not get_blob(): it hides which 404
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "size check") from exc
        return blob.size

    def delete(self, key: str) -> None:
        try:
            self._bucket.delete_blob(key, timeout=self._timeout, retry=self._retry)
        except _SDK_ERRORS as exc:
            error = self._error(exc, key, "delete")
            if not isinstance(error, NotFound):  # a missing object is already deleted; a missing bucket is not
                raise error from exc

    def list_sizes(self, prefix: str = ""):
        """``Listing``: (key, size) of every object whose key starts with ``prefix`` (adoption, offline tools)."""
        for key, size, _ in self.list_objects(prefix):
            yield key, size

    def list_objects(self, prefix: str = ""):
        """(key, size, last modified as a POSIX timestamp) of every object under ``prefix`` (offline tools)."""
        try:
            for blob in self._client.list_blobs(self.bucket_name, prefix=prefix or None, timeout=self._timeout,
                                                retry=self._retry):
                yield blob.name, blob.size, blob.updated.timestamp()
        except _SDK_ERRORS as exc:
            raise self._error(exc, prefix, "listing") from exc

    max_batch = 100  # a batch request's limit
    _batches = True  # False once the server proved it has no batch requests

    def delete_batch(self, keys) -> dict[str, StoreError]:
        """One batch request (``client.batch()``) of up to 100 deletes; a missing object counts as deleted."""
        if not keys:
            return {}
        if not self._batches:
            return self._delete_each(keys)
        batch = self._client.batch(raise_exception=False)
        try:
            with batch:
                for key in keys:
                    self._bucket.delete_blob(key, timeout=self._timeout)
        except _SDK_ERRORS as exc:
            raise self._error(exc, keys[0], f"batch delete of {len(keys)} objects starting with") from exc
        except ValueError:  # "not multi-part": a server without batch requests (fake-gcs-server)
            log.info("GCS: the server does not answer batch requests; deleting one object per request")
            self._batches = False
            self.max_batch = UNBATCHED  # smaller chunks, spread over the drainer's threads
            return self._delete_each(keys)
        responses = list(getattr(batch, "_responses", []))  # the sub-answers, in order (the SDK keeps them)
        statuses = [getattr(response, "status_code", None) for response in responses]
        return batch_failures(keys, statuses, "GCS", "object")

    def _delete_each(self, keys) -> dict[str, StoreError]:
        failed: dict[str, StoreError] = {}
        for key in keys:
            try:
                self.delete(key)
            except StoreError as exc:
                failed[key] = exc
        return failed

    def describe(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{key}"
