"""End to end (Orthanc 1.10.1 and 1.13): Azure without an account key. Orthanc is given only AccountUrl; the
plugin's DefaultAzureCredential gets its token from a fake App Service managed-identity endpoint on 127.0.0.1
and Azurite, in HTTPS with ``--oauth basic``, accepts it (see support.azure_identity for what Azurite checks).
A chain that finds no identity stops Orthanc at start-up with one line giving the chain's reason."""

import pytest
from support.attachments import attachment_uuids
from support.azure_identity import (
    FOREIGN_VARIABLES,
    FakeIdentityEndpoint,
    https_account_url,
    identity_environment,
    self_signed_certificate,
)
from support.servers import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, need_module

pytestmark = pytest.mark.orthanc
CONTAINER = "identity"


@pytest.fixture
def oauth_azurite(tmp_path, monkeypatch):
    """(Azurite in HTTPS and basic OAuth mode, the fake identity endpoint, the CA's PEM bytes)."""
    need_module("azure.identity")
    for name in FOREIGN_VARIABLES:  # Orthanc inherits the test's environment: no other identity for the chain
        monkeypatch.delenv(name, raising=False)
    certificate, key = self_signed_certificate()
    folder = tmp_path / "azurite-tls"
    folder.mkdir()
    (folder / "tls.crt").write_bytes(certificate)
    (folder / "tls.key").write_bytes(key)
    azurite = AzuriteServer(str(folder), tls=(str(folder / "tls.crt"), str(folder / "tls.key")))
    endpoint = FakeIdentityEndpoint()
    yield azurite, endpoint, str(folder / "tls.crt"), certificate
    endpoint.close()
    azurite.stop()


def start_with_identity(orthanc_factory, azurite, endpoint, certificate, **options):
    orthanc = orthanc_factory({}, start=False)
    ca_file = orthanc.write_file("azurite-ca.crt", certificate)
    orthanc.env = {**orthanc.env, **identity_environment(endpoint, ca_file)}
    orthanc.config.update({"AzureBlobStorage": {"AccountUrl": https_account_url(azurite), "ContainerName": CONTAINER,
                                                "MaxRetries": 1, **options}})
    return orthanc


def blobs_with_the_account_key(azurite, ca_file) -> dict[str, bytes]:
    from azure.storage.blob import BlobServiceClient
    client = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={https_account_url(azurite)};", connection_verify=ca_file)
    container = client.get_container_client(CONTAINER)
    return {blob.name: container.download_blob(blob.name).readall() for blob in container.list_blobs()}


def test_orthanc_stores_in_azure_with_an_identity_token_and_no_account_key(oauth_azurite, orthanc_factory,
                                                                          dicom_files):
    azurite, endpoint, host_ca_file, certificate = oauth_azurite
    orthanc = start_with_identity(orthanc_factory, azurite, endpoint, certificate)
    orthanc.start()
    assert endpoint.requests and set(endpoint.requests) == {"https://storage.azure.com"}
    _, dicom = dicom_files[0]
    instance = orthanc.upload(dicom)["ID"]
    assert orthanc.get(f"/instances/{instance}/file") == dicom
    uuid = next(uuid for uuid, kind in attachment_uuids(orthanc, instance) if kind == 1)
    assert blobs_with_the_account_key(azurite, host_ca_file)[f"{uuid}.dcm"] == dicom  # created with the token
    orthanc.delete(f"/instances/{instance}")
    log = orthanc.log()
    assert "eyJ" not in log and endpoint.header_secret not in log and AZURITE_KEY not in log


def test_a_chain_that_finds_no_identity_stops_start_up_with_its_reason(oauth_azurite, orthanc_factory):
    azurite, endpoint, _, certificate = oauth_azurite
    endpoint.refuse = True
    orthanc = start_with_identity(orthanc_factory, azurite, endpoint, certificate)
    assert orthanc.start(expect_failure=True) != 0
    lines = [line for line in orthanc.log().splitlines() if "no Azure identity for" in line]
    assert len(lines) == 1, orthanc.log()[-3000:]
    assert (f"AzureBlobStorage: no Azure identity for {https_account_url(azurite)}: DefaultAzureCredential found "
            "no token (") in lines[0]
    assert "ManagedIdentityCredential:" in lines[0] and endpoint.header_secret not in lines[0]
    assert endpoint.requests == ["https://storage.azure.com"]
