"""AzureBlobStorage and GoogleCloudStorage sections: defaults, our extra options, start-up errors, secrets."""

import json

import pytest
from support.config_checks import config_problems
from support.servers import need_module

from orthanc_objstore import build
from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import ConfigError

ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LW5ldmVyLWluLWEtbG9nLWxpbmU="
CONNECTION_STRING = (f"DefaultEndpointsProtocol=https;AccountName=pacs;AccountKey={ACCOUNT_KEY};"
                     "EndpointSuffix=core.windows.net")


def azure(**options):
    return {"AzureBlobStorage": {"ConnectionString": CONNECTION_STRING, "ContainerName": "orthanc", **options}}


def gcs(**options):
    return {"GoogleCloudStorage": {"BucketName": "orthanc-bucket", **options}}


def test_azure_defaults_and_trimming():
    parsed, warnings = config.parse(azure(ConnectionString=f"  {CONNECTION_STRING}\r\n", ContainerName=" orthanc\n"))
    provider = parsed.provider
    assert warnings == []
    assert provider.connection_string == CONNECTION_STRING
    assert provider.container_name == "orthanc"
    assert provider.create_container_if_not_exists is True
    assert provider.access_tier is None
    assert (provider.connect_timeout, provider.request_timeout, provider.max_retries) == (20, 60, 3)
    assert ACCOUNT_KEY not in repr(parsed)


def test_azure_account_name_or_url_instead_of_a_connection_string():
    by_name = config.parse({"AzureBlobStorage": {"AccountName": "pacsstore", "ContainerName": "orthanc"}})[0].provider
    assert (by_name.connection_string, by_name.account_url) == (None, "https://pacsstore.blob.core.windows.net")
    url = "https://pacsstore.blob.core.usgovcloudapi.net"
    by_url = config.parse({"AzureBlobStorage": {"AccountUrl": f" {url}\n", "ContainerName": "orthanc"}})[0].provider
    assert (by_url.connection_string, by_url.account_url, by_url.account_name) == (None, url, None)


def test_gcs_defaults_emulator_and_project_from_the_environment(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    provider = config.parse(gcs())[0].provider
    assert provider.service_account_file is None
    assert provider.emulator_host == "http://127.0.0.1:4443"
    assert provider.project == "my-project"
    assert (provider.connect_timeout, provider.request_timeout, provider.retry_timeout) == (60, 60, 120)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert config.parse(gcs(RetryTimeout=0))[0].provider.emulator_host is None


@pytest.mark.parametrize("configuration,expected", [
    (azure(ConnectionString=f"AccountKey={ACCOUNT_KEY}"), "AzureBlobStorage.ConnectionString: (value hidden) is invalid"),
    (azure(ConnectionString=ACCOUNT_KEY), "AzureBlobStorage.ConnectionString: (value hidden) is invalid"),
    (azure(ContainerName="Orthanc_Files"), "AzureBlobStorage.ContainerName: 'Orthanc_Files' (string) is invalid; "
                                           "allowed: 3 to 63 lowercase letters"),
    (azure(ContainerName="ab"), "AzureBlobStorage.ContainerName: 'ab' (string) is invalid"),
    (azure(ContainerName="a--b"), "AzureBlobStorage.ContainerName: 'a--b' (string) is invalid"),
    (azure(CreateContainerIfNotExists="true"), "AzureBlobStorage.CreateContainerIfNotExists: 'true' (string) is "
                                               "invalid; allowed: true or false"),
    (azure(MaxRetries=-1), "AzureBlobStorage.MaxRetries: -1 (number) is invalid; allowed: an integer from 0 to 100"),
    (azure(RequestTimeout=0), "AzureBlobStorage.RequestTimeout: 0 (number) is invalid; allowed: an integer from 1"),
    (gcs(BucketName="My Bucket"), "GoogleCloudStorage.BucketName: 'My Bucket' (string) is invalid; allowed: 3 to 63"),
    (gcs(ServiceAccountFile=""), "GoogleCloudStorage.ServiceAccountFile: empty; give the path"),
    (gcs(ServiceAccountFile="/nonexistent/key.json"), "GoogleCloudStorage.ServiceAccountFile: cannot read "
                                                      "'/nonexistent/key.json'"),
    (gcs(RetryTimeout="2"), "GoogleCloudStorage.RetryTimeout: '2' (string) is invalid"),
])
def test_each_invalid_value_is_named(configuration, expected):
    problems = config_problems(configuration, ACCOUNT_KEY)
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize("content,expected", [
    (b"not json", "is not a JSON file"),
    (json.dumps({"type": "authorized_user", "client_email": "x", "private_key": "y"}).encode(),
     "is not a service-account key file"),
])
def test_bad_service_account_files_name_the_file_not_the_content(tmp_path, content, expected):
    path = tmp_path / "key.json"
    path.write_bytes(content)
    problems = config_problems(gcs(ServiceAccountFile=str(path)), ACCOUNT_KEY)
    assert any(expected in problem and str(path) in problem for problem in problems), problems
    assert not any("authorized_user" in problem for problem in problems)


def service_account_file(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "pacs-project", "private_key_id": "k1", "private_key": pem,
            "client_email": "orthanc@pacs-project.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(info))
    return str(path), pem


def test_a_service_account_file_gives_a_client_for_its_project(tmp_path, monkeypatch):
    need_module("google.cloud.storage")
    from orthanc_objstore.storage.providers.gcs import GcsStore
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    path, pem = service_account_file(tmp_path)
    store = GcsStore(config.parse(gcs(ServiceAccountFile=path))[0].provider)
    assert store._client.project == "pacs-project"
    assert store.describe("a/b.dcm") == "gs://orthanc-bucket/a/b.dcm"
    assert "PRIVATE KEY" not in repr(store)


def test_no_credentials_at_all_is_one_clear_start_up_error(tmp_path, monkeypatch):
    need_module("google.cloud.storage")
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default file
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # not on Google Cloud: the metadata server is absent
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    with pytest.raises(ConfigError) as caught:
        build.provider_store(config.parse(gcs())[0])
    assert "no ServiceAccountFile is configured and no application-default credentials" in str(caught.value)


def test_an_unusable_connection_string_is_a_config_error_without_the_key():
    need_module("azure.storage.blob")
    from orthanc_objstore.storage.providers.azure import AzureStore
    broken = config.AzureConfig(connection_string=f"AccountKey={ACCOUNT_KEY};BlobEndpoint=",
                                container_name="orthanc")
    with pytest.raises(ConfigError) as caught:
        AzureStore(broken)
    assert ACCOUNT_KEY not in str(caught.value)
    assert "ConnectionString" in str(caught.value)


def test_azure_store_repr_and_describe_hide_the_account_key():
    need_module("azure.storage.blob")
    from orthanc_objstore.storage.providers.azure import AzureStore
    store = AzureStore(config.parse(azure())[0].provider)
    assert ACCOUNT_KEY not in repr(store)
    assert store.describe("x.dcm") == "azure://pacs/orthanc/x.dcm"
