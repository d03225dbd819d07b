"""Azure without an account key: AccountUrl/AccountName and DefaultAzureCredential, against a fake managed-identity
endpoint on 127.0.0.1 (the end-to-end tests add Azurite in OAuth mode: tests/e2e/test_e2e_azure_identity.py)."""

import pytest
from support.azure_identity import FOREIGN_VARIABLES, FakeIdentityEndpoint, unsigned_jwt
from support.servers import free_port, need_module

from orthanc_objstore import build
from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import ConfigError


@pytest.fixture
def identity(monkeypatch, tmp_path):
    """A fake App Service identity endpoint as the only identity the credential chain can find."""
    need_module("azure.identity")
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "no-azure-cli"))
    endpoint = FakeIdentityEndpoint()
    for name, value in endpoint.environment().items():
        monkeypatch.setenv(name, value)
    yield endpoint
    endpoint.close()


def azure_identity_config(url):
    return config.parse({"AzureBlobStorage": {"AccountUrl": url, "ContainerName": "orthanc", "MaxRetries": 0}})[0]


def test_a_chain_that_finds_no_identity_stops_start_up_with_its_reason_on_one_line(identity):
    identity.refuse = True
    url = f"https://127.0.0.1:{free_port()}/devstoreaccount1"
    with pytest.raises(ConfigError) as caught:
        build.provider_store(azure_identity_config(url))
    message = str(caught.value)
    assert message.startswith(f"AzureBlobStorage: no Azure identity for {url}: DefaultAzureCredential found no "
                              "token (")
    assert "ManagedIdentityCredential:" in message and "EnvironmentCredential:" in message
    assert "\n" not in message and "Visit https://" not in message
    assert identity.header_secret not in message
    assert identity.requests == ["https://storage.azure.com"]  # the chain asked the endpoint, once


def test_a_misconfigured_environment_is_a_config_error_naming_it(identity, monkeypatch):
    """A service principal's variables set but AZURE_CLIENT_ID empty: the chain refuses to be built (no request)."""
    monkeypatch.setenv("AZURE_TENANT_ID", "72f988bf-0000-4000-8000-000000000001")
    monkeypatch.setenv("AZURE_CLIENT_ID", "")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "client-secret-value")
    with pytest.raises(ConfigError) as caught:
        build.provider_store(azure_identity_config("https://pacsstore.blob.core.windows.net"))
    message = str(caught.value)
    assert "the Azure credential chain cannot be built from this process's environment" in message
    assert "client_id" in message and "client-secret-value" not in message
    assert identity.requests == []


def test_the_chain_reason_hides_tokens_and_the_environment_secrets(monkeypatch):
    from orthanc_objstore.errors import chain_reason
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cr3t-value")
    token = unsigned_jwt()
    reason = chain_reason(RuntimeError("DefaultAzureCredential failed to retrieve a token.\nAttempted credentials:\n"
                                       f"\tEnvironmentCredential: refused s3cr3t-value\n\tOther: got {token}\n"
                                       "Visit https://aka.ms/x to troubleshoot"))
    assert reason == "EnvironmentCredential: refused (hidden); Other: got (token hidden)"


def test_the_store_names_the_account_from_the_url_and_keeps_the_credential_out_of_its_repr(identity):
    need_module("azure.storage.blob")
    from orthanc_objstore.storage.providers.azure import AzureStore
    store = AzureStore(azure_identity_config("https://pacsstore.blob.core.windows.net").provider)
    assert store.describe("x.dcm") == "azure://pacsstore/orthanc/x.dcm"
    assert repr(store) == "AzureStore(account='pacsstore', container='orthanc')"
    assert identity.requests == []  # no token before the start-up check asks for one


def test_after_start_up_an_operation_without_a_token_is_refused_with_the_chains_reason(identity):
    need_module("azure.storage.blob")
    from orthanc_objstore.errors import NoCredentials
    from orthanc_objstore.storage.providers.azure import AzureStore
    identity.refuse = True
    store = AzureStore(azure_identity_config(f"https://127.0.0.1:{free_port()}/devstoreaccount1").provider)
    with pytest.raises(NoCredentials) as caught:
        store.head("x.dcm")
    assert str(caught.value).startswith("Azure size check of 'x.dcm': no token from the Azure identity chain (")
    assert "ManagedIdentityCredential:" in str(caught.value)
