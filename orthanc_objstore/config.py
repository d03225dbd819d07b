"""Configuration: Orthanc's JSON configuration → frozen dataclasses, every problem found at start-up.

This is the only module that reads raw configuration. It accepts every option of the official
plugins with the same name, type and default (SPEC CFG-2), refuses any invalid value with a line
naming the section, the option, the value and what is allowed (CFG-3), warns about unknown options
with the closest known name (CFG-4), and never puts a secret in a message (CFG-5).

``parse(configuration)`` returns ``(PluginConfig | None, warnings)``; ``None`` when no provider
section is present (Orthanc then keeps its own storage). It raises ``ConfigError`` with one line
per problem when anything is invalid: the plugin fails closed.
"""

import base64
import binascii
import difflib
import json
import os
import re
from dataclasses import dataclass, field

from .errors import ConfigError
from .naming import STRUCTURES

S3_SECTION = "AwsS3Storage"
AZURE_SECTION = "AzureBlobStorage"
GCS_SECTION = "GoogleCloudStorage"

HYBRID_DISABLED = "Disabled"
HYBRID_WRITE_TO_FILE_SYSTEM = "WriteToFileSystem"
HYBRID_WRITE_TO_OBJECT_STORAGE = "WriteToObjectStorage"
HYBRID_MODES = (HYBRID_DISABLED, HYBRID_WRITE_TO_FILE_SYSTEM, HYBRID_WRITE_TO_OBJECT_STORAGE)

S3_STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                      "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW")
AZURE_ACCESS_TIERS = ("Hot", "Cool", "Archive", "Premium", "Cold")
ENCRYPTION_FORMATS = ("A1", "A2")
MASTER_KEY_SIZE = 32
_MAX_UINT32 = 2 ** 32 - 1


@dataclass(frozen=True)
class MasterKey:
    """One master key: its id (written in every object's header) and its 32 bytes."""

    id: int
    path: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class EncryptionConfig:
    master_key: MasterKey
    previous_master_keys: tuple[MasterKey, ...] = ()
    max_concurrent_input_size_mb: int = 1024
    format: str = "A1"


@dataclass(frozen=True)
class CommonConfig:
    """Options every provider section shares, plus the global Orthanc options the plugin reads."""

    storage_structure: str = "flat"
    root_path: str = ""
    enable_legacy_unknown_files: bool = False
    hybrid_mode: str = HYBRID_DISABLED
    encryption: EncryptionConfig | None = None
    storage_directory: str = "OrthancStorage"
    sync_storage_area: bool = True
    server_identifier: str = ""


@dataclass(frozen=True)
class S3Config:
    bucket_name: str
    region: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    endpoint: str = ""
    virtual_addressing: bool = True
    connect_timeout: int = 30
    request_timeout: int = 1200
    max_connections: int = 25
    max_retries: int = 10
    enable_aws_sdk_logs: bool = False
    use_transfer_manager: bool = False
    transfer_pool_size: int = 10
    transfer_buffer_size_mb: int = 5
    storage_class: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    https_ca_certificates: str = ""


@dataclass(frozen=True)
class AzureConfig:
    """``AzureBlobStorage``. Timeouts and retries are beyond the official plugin (which used SDK defaults)."""

    connection_string: str = field(repr=False)
    container_name: str
    create_container_if_not_exists: bool = True
    access_tier: str | None = None
    connect_timeout: int = 20
    request_timeout: int = 60
    max_retries: int = 3


@dataclass(frozen=True)
class GcsConfig:
    """``GoogleCloudStorage``. Without ``service_account_file``, application-default credentials are used;
    ``emulator_host`` (from the STORAGE_EMULATOR_HOST environment variable) points the client at an
    emulator with anonymous credentials."""

    bucket_name: str
    service_account_file: str | None = None
    emulator_host: str | None = None
    project: str | None = None
    connect_timeout: int = 60
    request_timeout: int = 60
    retry_timeout: int = 120


@dataclass(frozen=True)
class PluginConfig:
    section: str
    common: CommonConfig
    provider: S3Config | AzureConfig | GcsConfig


class _Section:
    """Reads typed options from one JSON object, recording problems instead of stopping at the first."""

    def __init__(self, name: str, values, problems: list[str]):
        self.name = name
        self.values = values if isinstance(values, dict) else {}
        self.problems = problems
        self.known: set[str] = set()
        self.children: list[_Section] = []  # nested sections, whose unknown options are reported too
        if not isinstance(values, dict):
            problems.append(f"{name}: must be a JSON object, got {_json_type(values)}")

    def _lookup(self, option, required):
        self.known.add(option)
        if option not in self.values:
            if required:
                self.problems.append(f"{self.name}.{option}: missing, and it is required")
            return False, None
        return True, self.values[option]

    def _bad(self, option, value, allowed, secret=False):
        shown = "(value hidden)" if secret else f"{value!r} ({_json_type(value)})"
        self.problems.append(f"{self.name}.{option}: {shown} is invalid; allowed: {allowed}")

    def string(self, option, default=None, required=False, secret=False, strip=False):
        present, value = self._lookup(option, required)
        if not present:
            return default
        if not isinstance(value, str):
            self._bad(option, value, "a JSON string", secret)
            return default
        value = value.strip(" \t\r\n") if strip else value
        if required and not value:
            self.problems.append(f"{self.name}.{option}: empty, and it is required")
        return value

    def boolean(self, option, default):
        present, value = self._lookup(option, False)
        if not present:
            return default
        if not isinstance(value, bool):
            self._bad(option, value, "true or false (a JSON boolean, not a string)")
            return default
        return value

    def unsigned(self, option, default, minimum=0, maximum=_MAX_UINT32):
        present, value = self._lookup(option, False)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self._bad(option, value, f"an integer from {minimum} to {maximum}")
            return default
        return value

    def choice(self, option, default, allowed):
        value = self.string(option, default)
        if value is not None and value not in allowed:
            self._bad(option, value, ", ".join(allowed))
            return default
        return value

    def string_map(self, option):
        present, value = self._lookup(option, False)
        if not present:
            return ()
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self._bad(option, value, 'a JSON object of strings, e.g. {"project": "pacs"}')
            return ()
        return tuple(value.items())

    def raw(self, option):
        return self._lookup(option, False)

    def unknown_option_warnings(self) -> list[str]:
        warnings = []
        for option in self.values:
            if option in self.known:
                continue
            close = difflib.get_close_matches(option, sorted(self.known), n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known options: {', '.join(sorted(self.known))}"
            warnings.append(f"{self.name}: unknown option \"{option}\" is ignored{hint}")
        for child in self.children:
            warnings += child.unknown_option_warnings()
        return warnings


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def load_master_key(path: str) -> bytes:
    """Reads a key file: base64 of exactly 32 bytes, whitespace ignored. Messages name the file, never the key."""
    try:
        with open(path, "rb") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path!r}: {exc.strerror}") from None
    compact = b"".join(text.split())
    try:
        key = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the key file {path!r} is not valid base64 "
                          "(create one with: orthanc-objstore keygen FILE)") from None
    if len(key) != MASTER_KEY_SIZE:
        raise ConfigError(f"the key file {path!r} holds {len(key)} bytes; a master key is base64 of exactly "
                          f"{MASTER_KEY_SIZE} bytes (create one with: orthanc-objstore keygen FILE)")
    return key


def _master_key(section: _Section, option: str, value) -> MasterKey | None:
    where = f"{section.name}.{option}"
    if (not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool)
            or not isinstance(value[0], int) or not 0 <= value[0] <= _MAX_UINT32 or not isinstance(value[1], str)):
        section.problems.append(f"{where}: {value!r} is invalid; allowed: [id, \"/path/to/key\"] with id an "
                                f"integer from 0 to {_MAX_UINT32}")
        return None
    try:
        return MasterKey(value[0], value[1], load_master_key(value[1]))
    except ConfigError as exc:
        section.problems.append(f"{where}: {exc}")
        return None


def _encryption(parent: _Section, values) -> EncryptionConfig | None:
    section = _Section(f"{parent.name}.StorageEncryption", values, parent.problems)
    parent.children.append(section)
    problems = parent.problems
    enabled = section.boolean("Enable", True)
    present, master = section.raw("MasterKey")
    _, previous = section.raw("PreviousMasterKeys")
    max_size = section.unsigned("MaxConcurrentInputSize", 1024, minimum=1, maximum=1024 * 1024)
    encryption_format = section.choice("Format", "A1", ENCRYPTION_FORMATS)
    if not enabled:
        return None
    if not present:
        problems.append(f"{section.name}.MasterKey: missing; encryption is enabled, so it is required "
                        "(set \"Enable\": false to store objects unencrypted)")
        return None
    current = _master_key(section, "MasterKey", master)
    old = []
    if previous is not None:
        if not isinstance(previous, list):
            problems.append(f"{section.name}.PreviousMasterKeys: must be an array of [id, \"/path\"] pairs")
        else:
            old = [_master_key(section, f"PreviousMasterKeys[{i}]", item) for i, item in enumerate(previous)]
    if current is None or None in old:
        return None
    _check_distinct_key_ids(section, current, old)
    return EncryptionConfig(current, tuple(old), max_size, encryption_format)


def _check_distinct_key_ids(section: _Section, current: MasterKey, previous: list[MasterKey]) -> None:
    """Objects only record the key id: one id naming two different keys would make some unreadable."""
    seen = {current.id: ("MasterKey", current)}
    for index, key in enumerate(previous):
        where = f"PreviousMasterKeys[{index}]"
        first = seen.setdefault(key.id, (where, key))
        if first[1].key != key.key:
            section.problems.append(f"{section.name}.{where}: id {key.id} is already used by {first[0]} with a "
                                    f"different key ({first[1].path!r} and {key.path!r}); every key needs its own "
                                    "id, the id stored in each object selects the key that decrypts it")


def _common(section: _Section, orthanc: _Section) -> CommonConfig:
    structure = section.choice("StorageStructure", "flat", STRUCTURES)
    root_path = section.string("RootPath", "")
    if root_path and root_path.startswith("/"):
        section.problems.append(f"{section.name}.RootPath: {root_path!r} is invalid; it must not start with '/' "
                                "(write \"folder/sub\", not \"/folder/sub\")")
    legacy_unknown = section.boolean("EnableLegacyUnknownFiles", False)
    hybrid = section.choice("HybridMode", HYBRID_DISABLED, HYBRID_MODES)
    if section.boolean("MigrationFromFileSystemEnabled", False) and hybrid == HYBRID_DISABLED:
        hybrid = HYBRID_WRITE_TO_OBJECT_STORAGE
    present, encryption_values = section.raw("StorageEncryption")
    encryption = _encryption(section, encryption_values) if present else None
    return CommonConfig(
        storage_structure=structure, root_path=root_path or "", enable_legacy_unknown_files=legacy_unknown,
        hybrid_mode=hybrid, encryption=encryption,
        storage_directory=orthanc.string("StorageDirectory", "OrthancStorage"),
        sync_storage_area=orthanc.boolean("SyncStorageArea", True),
        server_identifier=orthanc.string("DatabaseServerIdentifier", ""))


def _s3(section: _Section, orthanc: _Section) -> S3Config:
    connect_timeout = section.unsigned("ConnectTimeout", 30)
    if "ConnectionTimeout" in section.values:
        connect_timeout = section.unsigned("ConnectionTimeout", connect_timeout)
    else:
        section.known.add("ConnectionTimeout")
    access_key = section.string("AccessKey")
    secret_key = section.string("SecretKey", secret=True)
    if (access_key is None) != (secret_key is None):
        present, missing = ("AccessKey", "SecretKey") if secret_key is None else ("SecretKey", "AccessKey")
        section.problems.append(f"{section.name}.{missing}: missing while {present} is set; give both, "
                                "or neither to use the default AWS credential chain")
    return S3Config(
        bucket_name=section.string("BucketName", required=True),
        region=section.string("Region", required=True),
        access_key=access_key, secret_key=secret_key,
        endpoint=section.string("Endpoint", ""),
        virtual_addressing=section.boolean("VirtualAddressing", True),
        connect_timeout=connect_timeout,
        request_timeout=section.unsigned("RequestTimeout", 1200),
        max_connections=section.unsigned("MaxConnections", 25, minimum=1),
        max_retries=section.unsigned("MaxRetries", 10),
        enable_aws_sdk_logs=section.boolean("EnableAwsSdkLogs", False),
        use_transfer_manager=section.boolean("UseTransferManager", False),
        transfer_pool_size=section.unsigned("TransferPoolSize", 10, minimum=1),
        transfer_buffer_size_mb=section.unsigned("TransferBufferSize", 5, minimum=5, maximum=5 * 1024),
        storage_class=section.choice("StorageClass", None, S3_STORAGE_CLASSES),
        tags=_s3_tags(section),
        https_ca_certificates=orthanc.string("HttpsCACertificates", ""))


_S3_TAG_TEXT = re.compile(r"^[\w\s+\-=.:/@]*$")


def _s3_tags(section: _Section):
    """Tags, checked against S3's rules (at most 10; key 1-128 and value 0-256 characters of letters,
    digits, spaces and + - = . _ : / @) so a bad tag stops start-up instead of failing every write."""
    tags = section.string_map("Tags")
    if len(tags) > 10:
        section.problems.append(f"{section.name}.Tags: {len(tags)} tags; S3 allows at most 10 per object")
    for key, value in tags:
        if not (1 <= len(key) <= 128 and len(value) <= 256 and _S3_TAG_TEXT.match(key) and _S3_TAG_TEXT.match(value)):
            section.problems.append(f"{section.name}.Tags: {key!r}: {value!r} is invalid; allowed: a key of 1 to 128 "
                                    "and a value of at most 256 letters, digits, spaces and + - = . _ : / @")
    return tags


def _azure(section: _Section, orthanc: _Section) -> AzureConfig:
    connection_string = section.string("ConnectionString", required=True, secret=True, strip=True)
    if connection_string and not _looks_like_connection_string(connection_string):
        section.problems.append(f"{section.name}.ConnectionString: (value hidden) is invalid; allowed: an Azure "
                                "storage connection string of Name=value pairs separated by ';', e.g. "
                                "DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;"
                                "EndpointSuffix=core.windows.net, or one with BlobEndpoint=... and "
                                "SharedAccessSignature=...")
    container_name = section.string("ContainerName", required=True, strip=True)
    if container_name and not _AZURE_CONTAINER_NAME.fullmatch(container_name):
        section._bad("ContainerName", container_name, "3 to 63 lowercase letters, digits and single hyphens, "
                     "starting and ending with a letter or digit (Azure's container naming rules)")
    return AzureConfig(
        connection_string=connection_string,
        container_name=container_name,
        create_container_if_not_exists=section.boolean("CreateContainerIfNotExists", True),
        access_tier=section.choice("AccessTier", None, AZURE_ACCESS_TIERS),
        connect_timeout=section.unsigned("ConnectTimeout", 20, minimum=1),
        request_timeout=section.unsigned("RequestTimeout", 60, minimum=1),
        max_retries=section.unsigned("MaxRetries", 3, maximum=100))


_AZURE_CONTAINER_NAME = re.compile(r"(?=.{3,63}$)[a-z0-9](?:-?[a-z0-9])*")
_GCS_BUCKET_NAME = re.compile(r"(?=.{3,222}$)[a-z0-9][a-z0-9._-]*[a-z0-9]")


def _looks_like_connection_string(value: str) -> bool:
    pairs = [part for part in value.split(";") if part.strip()]
    names = {part.split("=", 1)[0].strip().lower() for part in pairs if "=" in part}
    return (all("=" in part for part in pairs)
            and bool(names & {"accountname", "blobendpoint", "usedevelopmentstorage"}))


def _service_account_problem(path: str) -> str | None:
    """Why a service-account key file is unusable, naming the file but never quoting its content."""
    try:
        with open(path, "rb") as file:
            info = json.load(file)
    except OSError as exc:
        return f"cannot read {path!r}: {exc.strerror}"
    except ValueError:
        return f"{path!r} is not a JSON file"
    if not isinstance(info, dict) or info.get("type") != "service_account" or not all(
            isinstance(info.get(name), str) and info.get(name) for name in ("client_email", "private_key")):
        return (f"{path!r} is not a service-account key file (a JSON object with \"type\": "
                "\"service_account\", client_email and private_key, downloaded from the Google Cloud console)")
    return None


def _gcs(section: _Section, orthanc: _Section) -> GcsConfig:
    service_account_file = section.string("ServiceAccountFile")
    if service_account_file is not None:
        problem = _service_account_problem(service_account_file) if service_account_file else \
            "empty; give the path of a service-account key file, or remove the option to use the " \
            "application-default credentials"
        if problem:
            section.problems.append(f"{section.name}.ServiceAccountFile: {problem}")
    emulator_host = os.environ.get("STORAGE_EMULATOR_HOST") or None
    if emulator_host and "://" not in emulator_host:
        emulator_host = "http://" + emulator_host
    bucket_name = section.string("BucketName", required=True)
    if bucket_name and not _GCS_BUCKET_NAME.fullmatch(bucket_name):
        section._bad("BucketName", bucket_name, "3 to 63 lowercase letters, digits, '-', '_' and '.' (up to "
                     "222 with dots), starting and ending with a letter or digit (Google's bucket naming rules)")
    return GcsConfig(
        bucket_name=bucket_name,
        service_account_file=service_account_file,
        emulator_host=emulator_host,
        project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None,
        connect_timeout=section.unsigned("ConnectTimeout", 60, minimum=1),
        request_timeout=section.unsigned("RequestTimeout", 60, minimum=1),
        retry_timeout=section.unsigned("RetryTimeout", 120))


PROVIDERS = {S3_SECTION: _s3, AZURE_SECTION: _azure, GCS_SECTION: _gcs}


def parse(configuration: dict) -> tuple[PluginConfig | None, list[str]]:
    """Reads the plugin's configuration out of Orthanc's whole configuration (a dict)."""
    present = [name for name in PROVIDERS if name in configuration]
    if not present:
        return None, [f"no {' / '.join(PROVIDERS)} section in the configuration: the plugin is disabled "
                      "and Orthanc keeps its own storage"]
    if len(present) > 1:
        raise ConfigError(f"more than one storage section is configured ({', '.join(present)}); "
                          "keep exactly one")
    problems: list[str] = []
    name = present[0]
    section = _Section(name, configuration[name], problems)
    orthanc = _Section("(Orthanc configuration)", configuration, problems)
    common = _common(section, orthanc)
    provider = PROVIDERS[name](section, orthanc)
    if problems:
        raise ConfigError(problems)
    return PluginConfig(name, common, provider), section.unknown_option_warnings()
