"""Object-storage backends the end-to-end tests run against, behind one small interface.

A backend gives the plugin's configuration section for Orthanc, lists and reads the objects in its
bucket/container directly with the SDK (to check names and bytes), and has a fault proxy in front of
the server so tests can play "the server is down" without losing the server's state.
"""

import uuid

from orthanc_objstore.config import S3Config
from orthanc_objstore.stores.s3 import S3Store

from .servers import FaultProxy


class S3Backend:
    name = "s3"
    section = "AwsS3Storage"

    def __init__(self, moto):
        self.moto = moto
        self.bucket = f"test-{uuid.uuid4().hex[:12]}"
        self.client = moto.client()
        self.client.create_bucket(Bucket=self.bucket)
        self.proxy = FaultProxy(moto.port)

    def settings(self, **options) -> dict:
        section = {"BucketName": self.bucket, "Region": "us-east-1", "Endpoint": self.proxy.url,
                   "AccessKey": "test-access", "SecretKey": "test-secret-do-not-log",
                   "VirtualAddressing": False, "ConnectTimeout": 2, "RequestTimeout": 10, "MaxRetries": 1}
        section.update(options)
        return {self.section: section}

    def keys(self) -> list[str]:
        keys, token = [], None
        while True:
            kwargs = {"Bucket": self.bucket, **({"ContinuationToken": token} if token else {})}
            page = self.client.list_objects_v2(**kwargs)
            keys += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def read(self, key) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write(self, key, data: bytes):
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def store(self):
        return S3Store(S3Config(bucket_name=self.bucket, region="us-east-1", endpoint=self.moto.url,
                                access_key="test", secret_key="test", virtual_addressing=False, max_retries=2))

    def close(self):
        self.proxy.close()
