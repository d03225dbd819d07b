"""AWS S3 (and S3-compatible stores: MinIO, Ceph, Scaleway, ...) through boto3.

One boto3 client is created at start-up and shared by all of Orthanc's threads (boto3 clients are
thread-safe; its connection pool holds ``MaxConnections``). Retries and timeouts are botocore's own
(``standard`` retry mode: exponential backoff on throttling, 5xx and dropped connections).
A whole read is a single GET; ``UseTransferManager`` switches writes and whole reads to s3transfer
(multipart uploads and parallel ranged downloads).
The owner (see ``protocol``) is user metadata ``x-amz-meta-orthanc-attachment``, checked from the answer
of the GET that returns the data (no extra request); with the transfer manager a whole read asks a
HEAD first (s3transfer takes no ``IfMatch``: the download is pinned to the HEAD's ``VersionId`` on a
versioned bucket; elsewhere an object replaced between the two requests is not caught).
"""

import base64
import hashlib
import io
import logging
import urllib.parse
from collections.abc import Callable

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from ...errors import (
    BucketNotFound,
    IntegrityError,
    NeedsRestore,
    NotFound,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
    WrongOwner,
)
from ..buffers import as_file
from ..protocol import (
    IN_PROGRESS,
    NOT_NEEDED,
    NOT_RESTORED,
    OWNER_MARK_TEXT,
    OWNER_METADATA,
    RESTORED,
    ColdState,
    Owner,
    check_owner,
    read_exact_range,
)

# A HEAD answer has no body, so a 404 to HEAD object does not say whether the object or the bucket is
# missing: the bucket is asked (``S3Store._bucket_exists``). GET, PUT and DELETE say NoSuchKey/NoSuchBucket.
_BODILESS_NOT_FOUND_CODES = {"404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                 "InvalidToken", "AllAccessDisabled"}
COLD_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # readable only after RestoreObject (GLACIER_IR is read at once)
RESTORE_TIERS = ("Standard", "Bulk", "Expedited")
_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                      "ThrottlingException", "500", "502", "503", "504"}


def _translate(exc: Exception, key: str, operation: str,
               bucket_exists: Callable[[], bool] = lambda: True) -> StoreError:
    """The one table from botocore's exceptions to the store's errors. ``bucket_exists`` is asked only
    when a bodiless 404 cannot tell a missing object from a missing bucket."""
    where = f"S3 {operation} of {key!r}"
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (code in _BODILESS_NOT_FOUND_CODES and not bucket_exists()):
            return BucketNotFound(f"{where}: the bucket does not exist", key)
        if code == "NoSuchKey" or code in _BODILESS_NOT_FOUND_CODES:
            return NotFound(f"{where}: no such object", key)
        if code in _DENIED_CODES:
            return PermissionDenied(f"{where}: access denied ({code})", key)
        if code == "InvalidObjectState":  # a GET of an object in GLACIER / DEEP_ARCHIVE not restored
            storage_class = str(exc.response.get("Error", {}).get("StorageClass", "") or "a cold class")
            return NeedsRestore(f"{where}: the object is in the storage class {storage_class} and must be restored "
                                "before it can be read; restore it with POST /objstore/restore (the resource's "
                                "ids), or S3 RestoreObject, then read it again", key, storage_class)
        if code == "InvalidRange":
            return IntegrityError(f"{where}: range past the end of the object", key)
        if code in _UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
            return StoreUnavailable(f"{where}: the server kept failing ({code})", key)
        return StoreError(f"{where}: {code or status}", key)
    if isinstance(exc, botocore.exceptions.IncompleteReadError):
        return StoreUnavailable(f"{where}: the connection was cut before the whole object arrived", key)
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
                        botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ResponseStreamingError, botocore.exceptions.HTTPClientError)):
        return StoreUnavailable(f"{where}: the server is unreachable ({type(exc).__name__})", key)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return PermissionDenied(f"{where}: no credentials found (set AccessKey/SecretKey or the AWS "
                                "default credential chain)", key)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return StoreError(f"{where}: {type(exc).__name__}", key)
    return StoreError(f"{where}: {type(exc).__name__}", key)


_SDK_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _endpoint_url(endpoint: str) -> str | None:
    if not endpoint:
        return None
    return endpoint if "://" in endpoint else "https://" + endpoint


def _cold_state(described: dict) -> ColdState:
    """The storage class and restore state from a HEAD answer (``x-amz-restore``: ongoing-request, expiry)."""
    storage_class = described.get("StorageClass") or "STANDARD"
    if storage_class not in COLD_CLASSES:
        return ColdState(storage_class, NOT_NEEDED)
    restore = described.get("Restore") or ""
    if 'ongoing-request="true"' in restore:
        return ColdState(storage_class, IN_PROGRESS)
    if 'ongoing-request="false"' in restore:
        expiry = restore.split('expiry-date="', 1)[1].split('"', 1)[0] if 'expiry-date="' in restore else ""
        return ColdState(storage_class, RESTORED, expiry)
    return ColdState(storage_class, NOT_RESTORED)


class S3Store:
    records_owner = True  # see store.owner_checks
    restore_tiers = RESTORE_TIERS  # see store.Restorable

    def __init__(self, config, client=None):
        """``config`` is a ``config.S3Config``."""
        self.bucket = config.bucket_name
        self._config = config
        self._client = client or boto3.session.Session().client(
            "s3",
            region_name=config.region,
            endpoint_url=_endpoint_url(config.endpoint),
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            verify=config.https_ca_certificates or None,
            config=botocore.config.Config(
                connect_timeout=config.connect_timeout,
                read_timeout=config.request_timeout,
                max_pool_connections=config.max_connections,
                retries={"max_attempts": config.max_retries, "mode": "standard"},
                s3={"addressing_style": "virtual" if config.virtual_addressing else "path"},
            ))
        # botocore >= 1.36 sends a CRC32 of every body, which the server checks; older ones (or
        # AWS_REQUEST_CHECKSUM_CALCULATION=when_required) send none: then Content-MD5 makes S3 check the body.
        self._md5 = getattr(self._client.meta.config, "request_checksum_calculation", None) != "when_supported"
        self._extra = {}
        if config.storage_class:
            self._extra["StorageClass"] = config.storage_class
        if config.server_side_encryption:  # for buckets whose policy refuses writes without these headers
            self._extra["ServerSideEncryption"] = config.server_side_encryption
            if config.sse_kms_key_id:
                self._extra["SSEKMSKeyId"] = config.sse_kms_key_id
        if config.tags:
            self._extra["Tagging"] = urllib.parse.urlencode(config.tags)
        self._transfer = None
        if config.use_transfer_manager:
            part = config.transfer_buffer_size_mb * 1024 * 1024
            self._transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                                            max_concurrency=config.transfer_pool_size, use_threads=True)
        if config.enable_aws_sdk_logs:
            logging.getLogger("botocore").setLevel(logging.DEBUG)

    owners_since = None  # datetime: objects without an owner record modified after it are refused (mark_owners)

    def mark_owners(self, key: str):
        """The server's Last-Modified of the mark ``key``, created (create-only: If-None-Match) when missing,
        so that every replica sharing the bucket gets the same time, from the server's clock."""
        try:
            try:
                return self._client.head_object(Bucket=self.bucket, Key=key)["LastModified"]
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) not in _BODILESS_NOT_FOUND_CODES:
                    raise
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, IfNoneMatch="*", Body=OWNER_MARK_TEXT,
                                        **self._extra)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) != "PreconditionFailed":
                    raise  # 412: another replica created it first; its time is the one
            return self._client.head_object(Bucket=self.bucket, Key=key)["LastModified"]
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "owner mark") from exc

    def object_version(self, key: str) -> str:
        """The object's ETag: ``stamp_owner`` records an owner only on the version that was proven."""
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "version check") from exc

    def stamp_owner(self, key: str, owner: Owner, version: str) -> None:
        """Records ``owner`` on an existing object without sending its bytes again: a copy onto itself with
        the metadata replaced (S3's only metadata update; tags and the storage class are kept), only if it
        is still ``version`` (its ETag: CopySourceIfMatch); else ``StoreError``: it changed since."""
        extra = {name: value for name, value in self._extra.items() if name != "Tagging"}
        try:
            self._client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                     CopySourceIfMatch=version, Metadata={OWNER_METADATA: owner.metadata_value()},
                                     MetadataDirective="REPLACE", **extra)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("PreconditionFailed", "412"):
                raise StoreError(f"S3 owner stamp of {key!r}: the object changed since it was proven; not "
                                 "stamped (run verify --deep --stamp again)", key) from exc
            raise self._error(exc, key, "owner stamp") from exc
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "owner stamp") from exc

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, endpoint={self._config.endpoint or 'AWS'!r})"

    def count_retries(self, on_retry) -> None:
        """Calls ``on_retry()`` each time botocore sends a request again (its retry loop creates a new
        request per attempt; attempts after the first are retries). For metrics."""

        def created(request, **_):
            if request.context.get("retries", {}).get("attempt", 1) > 1:
                on_retry()

        self._client.meta.events.register("request-created.s3", created)

    def check_bucket(self) -> None:
        """Raises BucketNotFound when the bucket does not exist; other errors propagate translated."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
            # a 404 to HEAD bucket is about the bucket itself
            raise _translate(exc, self.bucket, "bucket check", bucket_exists=lambda: False) from exc

    def _bucket_exists(self) -> bool:
        """Whether the bucket exists, asked after a bodiless 404. When it cannot be checked the answer is
        yes: the 404 stays a NotFound, as the object's request said."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            return code not in _BODILESS_NOT_FOUND_CODES and code != "NoSuchBucket"
        except botocore.exceptions.BotoCoreError:
            return True
        return True

    def put(self, key: str, data: bytes | bytearray, *, owner: Owner | None = None) -> None:
        """``data``: bytes or a bytearray (the encryption layer's buffer), sent without a copy of it. The
        server checks one checksum: the CRC32 botocore computes (``x-amz-checksum-crc32``), or Content-MD5
        where botocore computes none. ``owner`` is recorded as user metadata."""
        extra = dict(self._extra)
        if owner is not None:
            extra["Metadata"] = {OWNER_METADATA: owner.metadata_value()}
        try:
            if self._transfer is not None:
                self._client.upload_fileobj(as_file(data), self.bucket, key, ExtraArgs=extra or None,
                                            Config=self._transfer)
            else:
                if self._md5:
                    extra["ContentMD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
                self._client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "write") from exc

    def get(self, key: str, *, owner: Owner | None = None) -> bytes:
        try:
            if self._transfer is not None:
                pinned = {}
                if owner is not None:
                    described = self._client.head_object(Bucket=self.bucket, Key=key)
                    _check_owner(key, owner, described, self.owners_since)
                    pinned = {"VersionId": described["VersionId"]} if described.get("VersionId") else {}
                buffer = io.BytesIO()
                self._client.download_fileobj(self.bucket, key, buffer, ExtraArgs=pinned or None,
                                              Config=self._transfer)
                return buffer.getvalue()
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            _check_owner(key, owner, response, self.owners_since)
            return _read_body(response, key)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "read") from exc

    def get_range(self, key: str, start: int, length: int, *, owner: Owner | None = None) -> bytes:
        def fetch():
            range_header = f"bytes={start}-{start + length - 1}"
            response = self._client.get_object(Bucket=self.bucket, Key=key, Range=range_header)
            _check_owner(key, owner, response, self.owners_since)
            return _read_body(response, key)

        return read_exact_range(key, start, length, fetch=fetch, head=self.head, sdk_errors=_SDK_ERRORS,
                                translate=self._error, where="S3")

    def head(self, key: str) -> int:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "size check") from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "delete") from exc

    max_batch = 1000  # DeleteObjects' limit

    def delete_batch(self, keys) -> dict[str, StoreError]:
        """``DeleteObjects`` in quiet mode: one request, only the keys that failed are answered."""
        if not keys:
            return {}
        try:
            response = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True})
        except _SDK_ERRORS as exc:
            raise self._error(exc, keys[0], f"batch delete of {len(keys)} objects starting with") from exc
        failed: dict[str, StoreError] = {}
        for item in response.get("Errors", []) or []:
            key, code = str(item.get("Key", "")), str(item.get("Code", ""))
            if code == "NoSuchKey":
                continue
            kind = (StoreUnavailable if code in _UNAVAILABLE_CODES else
                    PermissionDenied if code in _DENIED_CODES else StoreError)
            failed[key] = kind(f"S3 batch delete of {key!r}: {code or 'failed'}", key)
        return failed

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def cold_state(self, key: str) -> ColdState:
        try:
            return _cold_state(self._client.head_object(Bucket=self.bucket, Key=key))
        except _SDK_ERRORS as exc:
            raise self._error(exc, key, "storage class check") from exc

    def restore(self, key: str, days: int, tier: str) -> ColdState:
        """RestoreObject for ``days`` days at ``tier`` when the object is cold and not restored (one HEAD,
        then one request); a restore already running (RestoreAlreadyInProgress) is left as it is."""
        if tier not in RESTORE_TIERS:
            raise ValueError(f"restore tier {tier!r}: S3 allows {', '.join(RESTORE_TIERS)}")
        state = self.cold_state(key)
        if state.restore != NOT_RESTORED:
            return state
        request = {"Days": days, "GlacierJobParameters": {"Tier": tier}}
        try:
            self._client.restore_object(Bucket=self.bucket, Key=key, RestoreRequest=request)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) != "RestoreAlreadyInProgress":
                raise self._error(exc, key, "restore") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, key, "restore") from exc
        return self.cold_state(key)

    def list_sizes(self, prefix: str = ""):
        """``Listing``: (key, size) of every object whose key starts with ``prefix``, 1000 per request."""
        for key, size, _ in self.list_objects(prefix):
            yield key, size

    def list_objects(self, prefix: str = ""):
        """(key, size, last modified as a POSIX timestamp) of every object under ``prefix`` (offline tools)."""
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], item["Size"], item["LastModified"].timestamp()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, prefix, "listing") from exc

    def _error(self, exc: Exception, key: str, operation: str) -> StoreError:
        """``_translate``, with this store's bucket to ask when a 404 is ambiguous; a read refused for its
        class asks a HEAD (failure path only) to say whether a restore is already running."""
        error = _translate(exc, key, operation, self._bucket_exists)
        if isinstance(error, NeedsRestore) and operation != "storage class check":
            try:
                state = self.cold_state(key)
            except StoreError:
                return error
            if state.restore == IN_PROGRESS:
                return NeedsRestore(f"S3 {operation} of {key!r}: the object is in the storage class "
                                    f"{state.storage_class} and its restore is in progress; read it again when "
                                    "the restore is done (S3 takes minutes to hours)", key, state.storage_class,
                                    restoring=True)
        return error


def _check_owner(key, owner, response, owners_since=None) -> None:
    """The owner check on a GET or HEAD answer (its user metadata and Last-Modified); the body is closed
    when refused."""
    try:
        check_owner(key, owner, response.get("Metadata", {}).get(OWNER_METADATA), "S3",
                    response.get("LastModified"), owners_since)
    except WrongOwner:
        if "Body" in response:
            response["Body"].close()
        raise


def _read_body(response, key) -> bytes:
    """The whole body; a body shorter than its Content-Length is an error, never returned."""
    body = response["Body"]
    try:
        data = body.read()
    finally:
        body.close()
    expected = response.get("ContentLength")
    if expected is not None and len(data) != expected:
        raise StoreUnavailable(f"S3 read of {key!r}: got {len(data)} of {expected} bytes", key)
    return data
