"""AwsS3Storage options that change what reaches the server, checked on the objects moto holds.

The transfer manager inside Orthanc is tests/e2e/test_e2e_storage.py."""

import os
import ssl
import threading

import pytest

from orthanc_objstore.errors import NotFound, StoreUnavailable
from orthanc_objstore.metrics.metered import RETRIES_TOTAL, StorageMetrics


def test_tags_and_storage_class_are_set_with_the_object(s3_backend):
    store = s3_backend.store(max_retries=1, tags=(("project", "pacs"), ("site", "a b=c/d")), storage_class="STANDARD_IA")
    store.put("tagged.dcm", b"data")
    client = s3_backend.client
    tags = client.get_object_tagging(Bucket=s3_backend.bucket, Key="tagged.dcm")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("project", "pacs"), ("site", "a b=c/d")]
    assert client.head_object(Bucket=s3_backend.bucket, Key="tagged.dcm")["StorageClass"] == "STANDARD_IA"


def test_transfer_manager_uses_multipart_for_large_objects(s3_backend):
    store = s3_backend.store(max_retries=1, use_transfer_manager=True, transfer_buffer_size_mb=5, transfer_pool_size=4,
                      tags=(("project", "pacs"),))
    data = os.urandom(12 * 1024 * 1024)
    store.put("large.dcm", data)
    head = s3_backend.client.head_object(Bucket=s3_backend.bucket, Key="large.dcm")
    assert head["ETag"].strip('"').endswith("-3")  # three parts of 5, 5 and 2 MiB
    assert store.get("large.dcm") == data
    assert store.get_range("large.dcm", 5 * 1024 * 1024 - 10, 20) == data[5 * 1024 * 1024 - 10:5 * 1024 * 1024 + 10]
    with pytest.raises(NotFound):
        store.get("absent.dcm")


def test_https_ca_certificates(s3_backend, tmp_path):
    """A TLS front for moto with a private CA: refused without HttpsCACertificates, accepted with it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    front = TlsFront(s3_backend.moto.port, str(cert_path), str(key_path))
    try:
        refused = s3_backend.store(endpoint=front.url, max_retries=0)
        with pytest.raises(StoreUnavailable):
            refused.put("tls.dcm", b"x")
        trusted = s3_backend.store(endpoint=front.url, max_retries=1, https_ca_certificates=str(cert_path))
        trusted.put("tls.dcm", b"over tls")
        assert trusted.get("tls.dcm") == b"over tls"
    finally:
        front.close()


class TlsFront:
    """Terminates TLS on 127.0.0.1 and forwards the plain bytes to a local port."""

    def __init__(self, target_port, cert, key):
        import socket
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.target_port = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.listener.close()

    def _accept(self):
        import socket
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                client = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass


def test_s3_retries_are_counted(s3_backend):
    """MaxRetries as the metrics see it (moto behind the fault proxy)."""
    store = s3_backend.store(proxied=True, max_retries=3, connect_timeout=2, request_timeout=5)
    metrics = StorageMetrics()
    metrics.count_retries(store)
    store.put("a", b"x")
    assert metrics.metrics.value(RETRIES_TOTAL, storage="object-storage") == 0
    s3_backend.proxy.mode = "down"
    with pytest.raises(StoreUnavailable):
        store.get("a")
    s3_backend.proxy.mode = "pass"
    assert metrics.metrics.value(RETRIES_TOTAL, storage="object-storage") == 3  # MaxRetries 3: three more requests


@pytest.mark.parametrize("options, expected", [
    ({"server_side_encryption": "AES256"}, ("AES256", None)),
    ({"server_side_encryption": "aws:kms"}, ("aws:kms", None)),
    ({"server_side_encryption": "aws:kms", "sse_kms_key_id": "KMS"}, ("aws:kms", "KMS"))],
    ids=["AES256", "aws-kms-default-key", "aws-kms-key-id"])
def test_server_side_encryption_is_asked_with_every_write(s3_backend, options, expected):
    """x-amz-server-side-encryption (and its key id) on every write, for buckets whose policy demands them;
    moto records what was asked and answers it on HEAD, as S3 does."""
    if options.get("sse_kms_key_id") == "KMS":  # a real key of moto's KMS, by its ARN
        import boto3
        kms = boto3.client("kms", endpoint_url=s3_backend.moto.url, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        options = {**options, "sse_kms_key_id": kms.create_key()["KeyMetadata"]["Arn"]}
        expected = (expected[0], options["sse_kms_key_id"])
    for transfer_manager in (False, True):
        store = s3_backend.store(use_transfer_manager=transfer_manager, **options)
        key = f"sse-{transfer_manager}.dcm"
        data = os.urandom(6 * 1024 * 1024 if transfer_manager else 1000)
        store.put(key, data)
        head = s3_backend.client.head_object(Bucket=s3_backend.bucket, Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == expected
        assert store.get(key) == data  # S3 decrypts server-side: reads need nothing


def test_without_server_side_encryption_no_header_is_sent(s3_backend):
    store = s3_backend.store()
    store.put("plain.dcm", b"data")
    assert "SSEKMSKeyId" not in s3_backend.client.head_object(Bucket=s3_backend.bucket, Key="plain.dcm")
