"""Configuration: the official options with their defaults, and one clear message per invalid value."""

import base64
import os

import pytest
from support.config_checks import config_problems

from orthanc_objstore.config import sections as config

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def s3(**options):
    section = {"BucketName": "bucket", "Region": "eu-west-1"}
    section.update(options)
    return {"AwsS3Storage": section}


def test_no_section_disables_the_plugin_with_a_warning():
    parsed, warnings = config.parse({"StorageDirectory": "/var/lib/orthanc"})
    assert parsed is None
    assert "plugin is disabled" in warnings[0]


def test_s3_defaults_are_the_official_ones():
    parsed, warnings = config.parse(s3())
    assert warnings == []
    provider, common = parsed.provider, parsed.common
    assert (provider.connect_timeout, provider.request_timeout, provider.max_connections, provider.max_retries) == \
        (30, 1200, 25, 10)
    assert provider.virtual_addressing is True and provider.use_transfer_manager is False
    assert (provider.transfer_pool_size, provider.transfer_buffer_size_mb) == (10, 5)
    assert provider.access_key is None and provider.secret_key is None and provider.endpoint == ""
    assert common.storage_structure == "flat" and common.root_path == "" and common.hybrid_mode == "Disabled"
    assert common.encryption is None and common.enable_legacy_unknown_files is False
    assert common.storage_directory == "OrthancStorage" and common.sync_storage_area is True


def test_every_s3_option_is_read():
    parsed, warnings = config.parse({
        "HttpsCACertificates": "/etc/ssl/ca.pem", "StorageDirectory": "/data", "SyncStorageArea": False,
        **s3(AccessKey="AKIA", SecretKey=SECRET, Endpoint="http://127.0.0.1:9000", VirtualAddressing=False,
             ConnectTimeout=3, RequestTimeout=60, MaxConnections=7, MaxRetries=2, EnableAwsSdkLogs=True,
             UseTransferManager=True, TransferPoolSize=4, TransferBufferSize=8, StorageClass="STANDARD_IA",
             Tags={"project": "pacs"}, RootPath="orthanc", StorageStructure="legacy",
             EnableLegacyUnknownFiles=True, HybridMode="WriteToFileSystem")})
    assert warnings == []
    p, c = parsed.provider, parsed.common
    assert (p.access_key, p.secret_key, p.endpoint, p.virtual_addressing) == ("AKIA", SECRET, "http://127.0.0.1:9000", False)
    assert (p.connect_timeout, p.request_timeout, p.max_connections, p.max_retries) == (3, 60, 7, 2)
    assert (p.enable_aws_sdk_logs, p.use_transfer_manager, p.transfer_pool_size, p.transfer_buffer_size_mb) == \
        (True, True, 4, 8)
    assert (p.storage_class, p.tags, p.https_ca_certificates) == ("STANDARD_IA", (("project", "pacs"),), "/etc/ssl/ca.pem")
    assert (c.root_path, c.storage_structure, c.enable_legacy_unknown_files, c.hybrid_mode) == \
        ("orthanc", "legacy", True, "WriteToFileSystem")
    assert (c.storage_directory, c.sync_storage_area) == ("/data", False)
    assert SECRET not in repr(parsed)


@pytest.mark.parametrize("options", [{"ConnectionTimeout": 7}, {"ConnectTimeout": 3, "ConnectionTimeout": 7}])
def test_connection_timeout_synonym_works(options):
    assert config.parse(s3(**options))[0].provider.connect_timeout == 7


def test_migration_flag_means_write_to_object_storage():
    assert config.parse(s3(MigrationFromFileSystemEnabled=True))[0].common.hybrid_mode == "WriteToObjectStorage"


@pytest.mark.parametrize("configuration,expected", [
    ({"AwsS3Storage": {"Region": "eu"}}, "AwsS3Storage.BucketName: missing, and it is required"),
    ({"AwsS3Storage": {"BucketName": "b"}}, "AwsS3Storage.Region: missing, and it is required"),
    (s3(BucketName=""), "AwsS3Storage.BucketName: empty"),
    (s3(BucketName=12), "AwsS3Storage.BucketName: 12 (number) is invalid; allowed: a JSON string"),
    (s3(VirtualAddressing="false"), "AwsS3Storage.VirtualAddressing: 'false' (string) is invalid; allowed: true or false"),
    (s3(ConnectTimeout=-1), "AwsS3Storage.ConnectTimeout: -1 (number) is invalid; allowed: an integer from 0"),
    (s3(ConnectTimeout=2.5), "AwsS3Storage.ConnectTimeout: 2.5 (number) is invalid"),
    (s3(MaxRetries=True), "AwsS3Storage.MaxRetries: True (boolean) is invalid"),
    (s3(MaxConnections=0), "AwsS3Storage.MaxConnections: 0 (number) is invalid; allowed: an integer from 1"),
    (s3(TransferBufferSize=1), "AwsS3Storage.TransferBufferSize: 1 (number) is invalid; allowed: an integer from 5"),
    (s3(StorageClass="COLD"), "AwsS3Storage.StorageClass: 'COLD' (string) is invalid; allowed: STANDARD, "),
    (s3(Tags={"a": 1}), "AwsS3Storage.Tags: {'a': 1} (object) is invalid; allowed: a JSON object of strings"),
    (s3(Tags=["a"]), "AwsS3Storage.Tags: ['a'] (array) is invalid"),
    (s3(Tags={"a": "x&y"}), "AwsS3Storage.Tags: 'a': 'x&y' is invalid; allowed: a key of 1 to 128"),
    (s3(Tags={str(i): "v" for i in range(11)}), "AwsS3Storage.Tags: 11 tags; S3 allows at most 10"),
    (s3(StorageStructure="tree"), "AwsS3Storage.StorageStructure: 'tree' (string) is invalid; allowed: flat, legacy"),
    (s3(RootPath="/abs"), "AwsS3Storage.RootPath: '/abs' is invalid; it must not start with '/'"),
    (s3(HybridMode="WriteToDisk"), "AwsS3Storage.HybridMode: 'WriteToDisk' (string) is invalid; allowed: Disabled, "
                                   "WriteToFileSystem, WriteToObjectStorage"),
    (s3(EnableLegacyUnknownFiles=1), "AwsS3Storage.EnableLegacyUnknownFiles: 1 (number) is invalid"),
    (s3(AccessKey="AKIA"), "AwsS3Storage.SecretKey: missing while AccessKey is set"),
    (s3(SecretKey=SECRET), "AwsS3Storage.AccessKey: missing while SecretKey is set"),
    (s3(AccessKey="AKIA", SecretKey=12345), "AwsS3Storage.SecretKey: (value hidden) is invalid; allowed: a JSON string"),
    ({"AwsS3Storage": "bucket"}, "AwsS3Storage: must be a JSON object, got string"),
    ({**s3(), "SyncStorageArea": "yes"}, "(Orthanc configuration).SyncStorageArea: 'yes' (string) is invalid"),
    ({"AzureBlobStorage": {"ContainerName": "c"}}, "AzureBlobStorage.ConnectionString: missing; give "
     "ConnectionString (with an account key or a SAS), or AccountUrl or AccountName"),
    ({"AzureBlobStorage": {"ConnectionString": SECRET, "AccountName": "acct", "ContainerName": "c"}},
     "AzureBlobStorage.AccountName: set together with ConnectionString; give exactly one of"),
    ({"AzureBlobStorage": {"AccountUrl": "http://acct.blob.core.windows.net", "ContainerName": "c"}},
     "AzureBlobStorage.AccountUrl: 'http://acct.blob.core.windows.net' (string) is invalid; allowed: the "
     "account's blob endpoint over HTTPS"),
    ({"AzureBlobStorage": {"AccountUrl": "https://acct.blob.core.windows.net?sv=x&sig=y", "ContainerName": "c"}},
     "AzureBlobStorage.AccountUrl: 'https://acct.blob.core.windows.net?sv=x&sig=y' (string) is invalid"),
    ({"AzureBlobStorage": {"AccountName": "My_Account", "ContainerName": "c"}},
     "AzureBlobStorage.AccountName: 'My_Account' (string) is invalid; allowed: 3 to 24 lowercase letters"),
    ({"AzureBlobStorage": {"ConnectionString": SECRET, "ContainerName": "c", "AccessTier": "Warm"}},
     "AzureBlobStorage.AccessTier: 'Warm' (string) is invalid; allowed: Hot, Cool, Archive, Premium, Cold"),
    ({"AzureBlobStorage": {"ConnectionString": 5, "ContainerName": "c"}},
     "AzureBlobStorage.ConnectionString: (value hidden) is invalid"),
    ({"GoogleCloudStorage": {}}, "GoogleCloudStorage.BucketName: missing, and it is required"),
])
def test_each_invalid_value_names_section_option_value_and_what_is_allowed(configuration, expected):
    problems = config_problems(configuration, SECRET)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_every_problem_is_reported_at_once():
    problems = config_problems(s3(BucketName=1, Region=2, MaxRetries="ten"), SECRET)
    assert len(problems) == 3


def test_more_than_one_provider_section_is_refused():
    problems = config_problems({**s3(), "GoogleCloudStorage": {"BucketName": "b"}}, SECRET)
    assert "AwsS3Storage, GoogleCloudStorage" in problems[0]


@pytest.mark.parametrize("typo,suggestion", [("BuketName", "BucketName"), ("VirtualAdressing", "VirtualAddressing"),
                                             ("Endpont", "Endpoint"), ("StorageClas", "StorageClass")])
def test_typos_get_a_did_you_mean(typo, suggestion):
    configuration = s3()
    configuration["AwsS3Storage"][typo] = "x"
    parsed, warnings = config.parse(configuration)
    assert parsed is not None
    assert warnings == [f'AwsS3Storage: unknown option "{typo}" is ignored; did you mean "{suggestion}"?']


def write_key(tmp_path, name, raw: bytes):
    path = tmp_path / name
    path.write_bytes(base64.b64encode(raw) + b"\n")
    return str(path)


def test_encryption_keys_are_loaded(tmp_path):
    current, old = os.urandom(32), os.urandom(32)
    parsed, _ = config.parse(s3(StorageEncryption={
        "MasterKey": [3, write_key(tmp_path, "k3", current)],
        "PreviousMasterKeys": [[1, write_key(tmp_path, "k1", old)]], "MaxConcurrentInputSize": 8192}))
    encryption = parsed.common.encryption
    assert (encryption.master_key.id, encryption.master_key.key) == (3, current)
    assert [(k.id, k.key) for k in encryption.previous_master_keys] == [(1, old)]
    assert encryption.max_concurrent_input_size_mb == 8192 and encryption.format == "A1"
    assert current.hex() not in repr(parsed) and base64.b64encode(current).decode() not in repr(parsed)


def test_encryption_disabled_explicitly(tmp_path):
    assert config.parse(s3(StorageEncryption={"Enable": False}))[0].common.encryption is None


@pytest.mark.parametrize("content,expected", [
    (base64.b64encode(b"x" * 16), "holds 16 bytes; a master key is base64 of exactly 32 bytes"),
    (base64.b64encode(b"x" * 48), "holds 48 bytes"),
    (b"not base64 at all!", "is not valid base64"),
    (b"", "holds 0 bytes"),
])
def test_bad_key_files_refuse_start_up_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    problems = config_problems(s3(StorageEncryption={"MasterKey": [1, str(path)]}), SECRET)
    assert expected in problems[0] and str(path) in problems[0]


def test_missing_key_file_and_missing_master_key(tmp_path):
    problems = config_problems(s3(StorageEncryption={"MasterKey": [1, str(tmp_path / "absent.key")]}), SECRET)
    assert "cannot read the key file" in problems[0]
    problems = config_problems(s3(StorageEncryption={"Enable": True}), SECRET)
    assert "StorageEncryption.MasterKey: missing" in problems[0]
    problems = config_problems(s3(StorageEncryption={"MasterKey": "file.key"}), SECRET)
    assert "StorageEncryption.MasterKey: 'file.key' is invalid; allowed: [id," in problems[0]


# --- the option table ----------------------------------------------------------------------------------

MINIMAL = {"AwsS3Storage": {"BucketName": "bucket", "Region": "eu-west-1"},
           "AzureBlobStorage": {"ConnectionString": "AccountName=a;AccountKey=k", "ContainerName": "orthanc"},
           "GoogleCloudStorage": {"BucketName": "bucket"}}


@pytest.mark.parametrize("section", sorted(MINIMAL))
def test_every_default_comes_from_the_option_table(section):
    from orthanc_objstore.config.options import declared
    parsed, warnings = config.parse({section: MINIMAL[section]}, environ={})
    assert warnings == []
    for holder in (parsed.common, parsed.provider):
        for name, spec in declared(type(holder)):
            if not spec.required and spec.kind != "raw" and spec.name not in MINIMAL[section]:
                assert getattr(holder, name) == spec.default, (section, spec.name)


@pytest.mark.parametrize("section", sorted(MINIMAL))
def test_the_unknown_option_warning_lists_the_tables_options(section):
    _, warnings = config.parse({section: {**MINIMAL[section], "Zq9": 1}}, environ={})
    listed = warnings[0].split("known options: ")[1].split(", ")
    assert listed == sorted(name for spec in config.options(section) for name in spec.names)
    assert ("ConnectionTimeout" in listed) == (section == "AwsS3Storage")


def test_options_of_the_nested_and_global_sections():
    assert [spec.name for spec in config.options(config.ENCRYPTION_SECTION)] == \
        ["Enable", "MasterKey", "PreviousMasterKeys", "MaxConcurrentInputSize", "Format"]
    assert {spec.name for spec in config.options(config.GLOBAL_SECTION)} == \
        {"StorageDirectory", "SyncStorageArea", "DatabaseServerIdentifier", "StorageCompression", "HttpsCACertificates"}
    with pytest.raises(ValueError, match="unknown section 'Nope'"):
        config.options("Nope")


def test_the_environment_is_passed_in():
    provider = config.parse({"GoogleCloudStorage": {"BucketName": "bucket"}},
                            environ={"STORAGE_EMULATOR_HOST": "127.0.0.1:4443", "GOOGLE_CLOUD_PROJECT": "p"})[0].provider
    assert (provider.emulator_host, provider.project) == ("http://127.0.0.1:4443", "p")
    provider = config.parse({"GoogleCloudStorage": {"BucketName": "bucket"}}, environ={})[0].provider
    assert (provider.emulator_host, provider.project) == (None, None)


def test_encryption_constants_have_one_source():
    from orthanc_objstore.config import rules
    from orthanc_objstore.crypto import keys
    assert config.ENCRYPTION_FORMATS is keys.FORMATS and rules.MASTER_KEY_SIZE == keys.KEY_SIZE
