"""Object-storage backends the end-to-end tests run against, behind one small interface.

Every backend has the same methods: ``settings(**options)`` (the plugin's configuration section for
Orthanc), ``environment()`` (what Orthanc's process needs in its environment), ``store(proxied=False,
**options)`` (the provider's store on this bucket, options as config fields), ``missing_bucket_store()``,
``keys``/``read``/``read_with_metadata``/``write``/``delete`` (the bucket as the SDK sees it) and ``close()``.

A backend gives the plugin's configuration section for Orthanc, lists and reads the objects in its
bucket/container directly with the SDK (to check names and bytes), exchanges two objects as a copy
script would (``swap``: with or without their metadata), and has a fault proxy in front of
the server so tests can play "the server is down" without losing the server's state.
"""

import time
import uuid

from orthanc_objstore.config.sections import S3Config
from orthanc_objstore.storage.protocol import OWNER_MARK
from orthanc_objstore.storage.providers.s3 import S3Store

from .servers import FaultProxy


def swap(backend, first: str, second: str, keep_metadata: bool = True) -> None:
    """Exchanges the objects under two keys, as a wrong copy/rename script or a sync tool would: with their
    user metadata (a server-side copy keeps it) or without (bytes only)."""
    (data_1, meta_1), (data_2, meta_2) = backend.read_with_metadata(first), backend.read_with_metadata(second)
    backend.write(first, data_2, meta_2 if keep_metadata else None)
    backend.write(second, data_1, meta_1 if keep_metadata else None)


# The plugin's read cache (docs/viewers.md) is off in the tests' settings unless a test turns it on, as
# Orthanc's own cache is (MaximumStorageCacheSize 0): most tests count store requests or make the store
# fail and expect the next read to fail. The viewer and stress tests run with it on.
NO_READ_CACHE = {"ReadCache": False}


def predate_owner_mark(backend) -> None:
    """Makes the objects written without metadata so far older than the bucket's owner mark, as the official
    plugin's or an older version's are: the mark is removed (the next start creates it again, a second
    later)."""
    backend.delete(OWNER_MARK)
    time.sleep(1.1)  # S3's and Azure's Last-Modified have whole seconds


class S3Backend:
    name = "s3"
    section = "AwsS3Storage"
    secret_option = "SecretKey"           # the option holding a secret (never logged)
    url_scheme = "s3://"                  # how the store describes its objects
    typo = ("VirtualAdressing", "VirtualAddressing")  # a misspelt option and the one it should suggest

    def __init__(self, moto):
        self.moto = moto
        self.bucket = f"test-{uuid.uuid4().hex[:12]}"
        self.client = moto.client()
        self.client.create_bucket(Bucket=self.bucket)
        self.proxy = FaultProxy(moto.port)
        self.secret = "test-secret-do-not-log"

    def settings(self, **options) -> dict:
        section = {"BucketName": self.bucket, "Region": "us-east-1", "Endpoint": self.proxy.url,
                   "AccessKey": "test-access", "SecretKey": self.secret,
                   "VirtualAddressing": False, "ConnectTimeout": 2, "RequestTimeout": 10, "MaxRetries": 1}
        section.update({**NO_READ_CACHE, **options})
        return {self.section: section}

    def keys(self) -> list[str]:
        keys, token = [], None
        while True:
            kwargs = {"Bucket": self.bucket, **({"ContinuationToken": token} if token else {})}
            page = self.client.list_objects_v2(**kwargs)
            keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith(OWNER_MARK)]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def read(self, key) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def read_with_metadata(self, key) -> tuple[bytes, dict]:
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        return response["Body"].read(), response.get("Metadata", {})

    def modified(self, key):
        """The server's time the owner mark is compared with (S3: Last-Modified)."""
        return self.client.head_object(Bucket=self.bucket, Key=key)["LastModified"]

    def write(self, key, data: bytes, metadata: dict | None = None):
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata or {})

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def missing_container_settings(self) -> dict:
        return self.settings(BucketName="no-such-bucket-here")

    def environment(self) -> dict:
        return {}

    def store(self, proxied=False, **options):
        """An S3Store on this bucket, straight to moto or (``proxied``) through the FaultProxy; ``options``
        are S3Config fields (they override the defaults here)."""
        endpoint = self.proxy.url if proxied else self.moto.url
        fields = {"bucket_name": self.bucket, "region": "us-east-1", "endpoint": endpoint, "access_key": "test",
                  "secret_key": "test", "virtual_addressing": False, "max_retries": 2, **options}
        return S3Store(S3Config(**fields))

    def missing_bucket_store(self):
        """A store over a bucket that does not exist on this server."""
        return self.store(bucket_name=f"missing-{uuid.uuid4().hex[:12]}")

    def close(self):
        self.proxy.close()


class AzureBackend:
    """A fresh container in a shared Azurite; the plugin reaches it through this backend's FaultProxy."""

    name = "azure"
    section = "AzureBlobStorage"
    secret_option = "ConnectionString"
    url_scheme = "azure://"
    typo = ("CreateContainerIfNotExist", "CreateContainerIfNotExists")

    def __init__(self, azurite):
        self.azurite = azurite
        self.container = f"test-{uuid.uuid4().hex[:12]}"
        self.proxy = FaultProxy(azurite.port)
        self.client = azurite.client().get_container_client(self.container)
        self.client.create_container()
        self.secret = azurite.connection_string().split("AccountKey=", 1)[1].split(";", 1)[0]

    def settings(self, **options) -> dict:
        section = {"ConnectionString": self.azurite.connection_string(self.proxy.port),
                   "ContainerName": self.container, "ConnectTimeout": 2, "RequestTimeout": 10, "MaxRetries": 1}
        section.update({**NO_READ_CACHE, **options})
        return {self.section: section}

    def environment(self) -> dict:
        return {}

    def keys(self) -> list[str]:
        return sorted(name for name in self.client.list_blob_names() if not name.endswith(OWNER_MARK))

    def read(self, key) -> bytes:
        return self.client.download_blob(key).readall()

    def read_with_metadata(self, key) -> tuple[bytes, dict]:
        downloader = self.client.download_blob(key)
        return downloader.readall(), dict(downloader.properties.metadata or {})

    def modified(self, key):
        """The server's time the owner mark is compared with (Azure: Last-Modified)."""
        return self.client.get_blob_client(key).get_blob_properties().last_modified

    def write(self, key, data: bytes, metadata: dict | None = None):
        self.client.upload_blob(key, data, overwrite=True, metadata=metadata or None)

    def delete(self, key):
        self.client.delete_blob(key)

    def missing_container_settings(self) -> dict:
        return self.settings(ContainerName="no-such-container-here", CreateContainerIfNotExists=False)

    def store(self, proxied=False, **options):
        from orthanc_objstore.config.sections import AzureConfig
        from orthanc_objstore.storage.providers.azure import AzureStore
        port = self.proxy.port if proxied else None
        return AzureStore(AzureConfig(connection_string=self.azurite.connection_string(port),
                                      container_name=self.container, **options))

    def missing_bucket_store(self):
        """A store over a container that does not exist in this account (and may not be created)."""
        from orthanc_objstore.config.sections import AzureConfig
        from orthanc_objstore.storage.providers.azure import AzureStore
        return AzureStore(AzureConfig(connection_string=self.azurite.connection_string(),
                                      container_name=f"missing-{uuid.uuid4().hex[:12]}",
                                      create_container_if_not_exists=False))

    def close(self):
        self.proxy.close()
        try:
            self.client.delete_container()
        except Exception:  # noqa: BLE001 - best-effort cleanup of a throw-away container
            pass


class GcsBackend:
    """A fresh fake-gcs-server of its own (it starts in ~20 ms), with its FaultProxy announced as the
    server's external URL so that resumable uploads also go through the proxy."""

    name = "gcs"
    section = "GoogleCloudStorage"
    secret_option = None  # the section holds no secret (ServiceAccountFile is a path)
    url_scheme = "gs://"
    typo = ("RetryTimout", "RetryTimeout")

    def __init__(self):
        from .servers import FakeGcsServer
        self.server = FakeGcsServer(proxied=True)
        self.proxy = self.server.proxy
        self.bucket_name = f"test-{uuid.uuid4().hex[:12]}"
        self.client = self.server.client()
        self.bucket = self.client.create_bucket(self.bucket_name)
        self.secret = None

    def settings(self, **options) -> dict:
        section = {"BucketName": self.bucket_name, "ConnectTimeout": 2, "RequestTimeout": 10, "RetryTimeout": 3}
        section.update({**NO_READ_CACHE, **options})
        return {self.section: section}

    def environment(self) -> dict:
        """What the Orthanc process needs in its environment to reach the emulator (through the proxy)."""
        return {"STORAGE_EMULATOR_HOST": self.proxy.url}

    def keys(self) -> list[str]:
        return sorted(blob.name for blob in self.client.list_blobs(self.bucket_name)
                      if not blob.name.endswith(OWNER_MARK))

    def read(self, key) -> bytes:
        return self.bucket.blob(key).download_as_bytes()

    def read_with_metadata(self, key) -> tuple[bytes, dict]:
        blob = self.bucket.get_blob(key)
        return blob.download_as_bytes(), dict(blob.metadata or {})

    def modified(self, key):
        """The server's time the owner mark is compared with (GCS: the generation's timeCreated)."""
        return self.bucket.get_blob(key).time_created

    def write(self, key, data: bytes, metadata: dict | None = None):
        blob = self.bucket.blob(key)
        blob.metadata = metadata or None
        blob.upload_from_string(data)

    def delete(self, key):
        self.bucket.blob(key).delete()

    def missing_container_settings(self) -> dict:
        return self.settings(BucketName="no-such-bucket-here")

    def store(self, proxied=False, **options):
        from orthanc_objstore.config.sections import GcsConfig
        from orthanc_objstore.storage.providers.gcs import GcsStore
        endpoint = self.proxy.url if proxied else self.server.url
        return GcsStore(GcsConfig(bucket_name=self.bucket_name, emulator_host=endpoint, **options))

    def missing_bucket_store(self):
        """A store over a bucket that does not exist on this server."""
        from orthanc_objstore.config.sections import GcsConfig
        from orthanc_objstore.storage.providers.gcs import GcsStore
        return GcsStore(GcsConfig(bucket_name=f"missing-{uuid.uuid4().hex[:12]}", emulator_host=self.server.url))

    def close(self):
        self.server.stop()
