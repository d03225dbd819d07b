"""Configuration: Orthanc's JSON configuration → frozen dataclasses, every problem found at start-up.

This is the only module that reads raw configuration. Each dataclass field below declares its option
once (name, default, bounds, aliases: ``options.option``); one generic reader reads them; the rules
between fields are small named functions (``rules``, and two below the table). It accepts every
option of the official plugins with the same name, type and default (SPEC CFG-2), refuses any invalid
value with a line naming the section, the option, the value and what is allowed (CFG-3), warns about
unknown options with the closest known name (CFG-4), and never puts a secret in a message (CFG-5).

``parse(configuration, environ)`` returns ``(PluginConfig | None, warnings)``; ``None`` when no
provider section is present (Orthanc then keeps its own storage). It raises ``ConfigError`` with one
line per problem when anything is invalid: the plugin fails closed. ``options(section)`` lists the
options of a section, for ``check-config --list-options`` and the tests.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..areas.naming import STRUCTURES
from ..crypto.formats import FORMATS as ENCRYPTION_FORMATS
from ..errors import ConfigError
from ..storage.protocol import OWNERLESS_ACCEPT_BEFORE_MARK, OWNERLESS_POLICIES
from . import rules
from .options import ABSENT, Option, Section, declared, default_of, option
from .rules import MasterKey
from .schedule import Window, parse_duration

S3_SECTION = "AwsS3Storage"
AZURE_SECTION = "AzureBlobStorage"
GCS_SECTION = "GoogleCloudStorage"
ENCRYPTION_SECTION = "StorageEncryption"
TIERING_SECTION = "Tiering"
INDEXER_SECTION = "Indexer"
READ_CACHE_SECTION = "ReadCache"
PREFETCH_SECTION = "Prefetch"
GLOBAL_SECTION = "(Orthanc configuration)"
"""The top level of Orthanc's configuration: the global options the plugin reads."""

HYBRID_DISABLED = "Disabled"
HYBRID_WRITE_TO_FILE_SYSTEM = "WriteToFileSystem"
HYBRID_WRITE_TO_OBJECT_STORAGE = "WriteToObjectStorage"
HYBRID_MODES = (HYBRID_DISABLED, HYBRID_WRITE_TO_FILE_SYSTEM, HYBRID_WRITE_TO_OBJECT_STORAGE)

S3_SERVER_SIDE_ENCRYPTIONS = ("AES256", "aws:kms", "aws:kms:dsse")
S3_STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                      "GLACIER", "DEEP_ARCHIVE", "OUTPOSTS", "GLACIER_IR", "SNOW")
AZURE_ACCESS_TIERS = ("Hot", "Cool", "Archive", "Premium", "Cold")
S3_COLD_CLASSES = ("GLACIER", "DEEP_ARCHIVE")  # reads need a restore first; GLACIER_IR does not
AZURE_COLD_TIERS = ("Archive",)
RESTORE_TIERS = {S3_SECTION: ("Standard", "Bulk", "Expedited"), AZURE_SECTION: ("Standard", "High")}
GLOBAL = "orthanc"  # the scope of a global Orthanc option

# Options that are no field: they only change how other fields are read.
ENCRYPTION_ENABLE = Option("Enable", True, "boolean")
MIGRATION_FROM_FILE_SYSTEM = Option("MigrationFromFileSystemEnabled", False, "boolean")
ENABLE = Option("Enable", True, "boolean")  # inside ReadCache and Prefetch


@dataclass(frozen=True)
class EncryptionConfig:
    master_key: MasterKey = option("MasterKey", kind="raw", note='required while Enable is true: [id, "/path/to/key"]')
    previous_master_keys: tuple[MasterKey, ...] = option("PreviousMasterKeys", (), kind="raw",
                                                         note='[[id, "/path/to/key"], ...], to read older objects')
    max_concurrent_input_size_mb: int = option("MaxConcurrentInputSize", 1024, minimum=1, maximum=1024 * 1024)
    format: str = option("Format", "A1", choices=ENCRYPTION_FORMATS)


@dataclass(frozen=True)
class TieringConfig:
    """``Tiering`` (inside the storage section, hybrid mode only): durations in seconds, the window parsed."""

    move_after: int = option("MoveToObjectStorageAfter", kind="raw", required=True,
                             note='required: e.g. "30d" (durations: "90s", "15m", "12h", "30d")')
    check_every: int = option("CheckEvery", "1h", kind="raw", note="how often the policy looks for studies to move")
    window: Window | None = option("Window", None, note='"HH:MM-HH:MM" local time; absent: at any time')
    max_concurrent_files: int = option("MaxConcurrentFiles", 8, minimum=1, maximum=64)
    enabled: bool = option("Enabled", True, note="false on every replica but one when several share an index")


@dataclass(frozen=True)
class IndexerConfig:
    """``Indexer`` (inside the storage section): adopts the objects under ``prefixes`` every ``interval`` seconds
    and abandons the instances whose object vanished (docs/adoption.md)."""

    prefixes: tuple[str, ...] = option("Prefixes", kind="raw", required=True,
                                       note='required: the key prefixes to adopt, e.g. ["lake/"] ("" is the '
                                            "whole bucket)")
    interval: int = option("Interval", "5m", kind="raw", note='how often each prefix is adopted (durations: '
                                                             '"90s", "15m", "12h", "30d")')
    take_ownership: bool = option("TakeOwnership", False, note="true: the adopted objects are Orthanc's, deleted "
                                  "with their instance")
    enabled: bool = option("Enabled", True, note="false on every replica but one when several share an index")


@dataclass(frozen=True)
class ReadCacheConfig:
    """``ReadCache`` (inside the storage section): a bounded cache of objects read from the object storage,
    in memory, and on disk when ``folder`` is set; ``false`` turns it off (docs/viewers.md)."""

    memory_size_mb: int = option("MemorySize", 256, minimum=0, maximum=1024 * 1024,
                                 note="MB of memory (LRU); 0: no memory cache")
    max_entry_size_mb: int = option("MaxEntrySize", 32, minimum=1, maximum=1024 * 1024,
                                    note="MB; larger objects are never kept in memory")
    folder: str = option("Folder", "", note="a folder for the disk cache; empty: no disk cache")
    folder_size_mb: int = option("FolderSize", 4096, minimum=1, maximum=1024 * 1024 * 1024,
                                 note="MB of disk the cache may fill (evicts the least recently used)")


@dataclass(frozen=True)
class PrefetchConfig:
    """``Prefetch`` (inside the storage section): parallel reads of a series or study a request shows is
    about to be read, into the read cache; ``false`` turns it off (docs/viewers.md)."""

    max_in_flight: int = option("MaxInFlight", 16, minimum=1, maximum=64, note="parallel reads")
    max_bytes_in_flight_mb: int = option("MaxBytesInFlight", 64, minimum=1, maximum=64 * 1024,
                                         note="MB being read at once")


@dataclass(frozen=True)
class CommonConfig:
    """Options every provider section shares, plus the global Orthanc options the plugin reads."""

    storage_structure: str = option("StorageStructure", "flat", choices=STRUCTURES)
    root_path: str = option("RootPath", "")
    enable_legacy_unknown_files: bool = option("EnableLegacyUnknownFiles", False)
    hybrid_mode: str = option("HybridMode", HYBRID_DISABLED, choices=HYBRID_MODES)
    encryption: EncryptionConfig | None = option(ENCRYPTION_SECTION, None, kind="raw",
                                                 note="client-side encryption, a section (below)")
    tiering: TieringConfig | None = option(TIERING_SECTION, None, kind="raw",
                                           note="automatic moves by age, a section (below); hybrid mode only")
    indexer: IndexerConfig | None = option(INDEXER_SECTION, None, kind="raw",
                                           note="periodic adoption of key prefixes, a section (below)")
    read_cache: ReadCacheConfig | None = option(READ_CACHE_SECTION, ReadCacheConfig(), kind="raw",
                                                note="a section (below), or false to turn the cache off")
    prefetch: PrefetchConfig | None = option(PREFETCH_SECTION, PrefetchConfig(), kind="raw",
                                             note="a section (below), or false to turn prefetching off")
    delayed_deletion: bool = option("DelayedDeletion", True, note="deletions queued on the local disk and sent in "
                                    "batches; false: each remove callback deletes at once")
    delayed_deletion_folder: str = option("DelayedDeletionFolder", "", note="the queue's folder; empty: "
                                          "StorageDirectory/objstore-deletions[/DatabaseServerIdentifier]")
    delayed_deletion_threads: int = option("DelayedDeletionThreads", 4, minimum=1, maximum=64,
                                           note="batch requests sent at once by the drainer")
    storage_directory: str = option("StorageDirectory", "OrthancStorage", scope=GLOBAL)
    sync_storage_area: bool = option("SyncStorageArea", True, scope=GLOBAL)
    server_identifier: str = option("DatabaseServerIdentifier", "", scope=GLOBAL)
    storage_compression: bool = option("StorageCompression", False, scope=GLOBAL)
    ownerless_objects: str = option("OwnerlessObjects", OWNERLESS_ACCEPT_BEFORE_MARK, choices=OWNERLESS_POLICIES,
                                    note="objects without an owner record: read when older than the "
                                         "RootPath's owner mark (AcceptBeforeMark), always, or never")
    restore_on_read: bool = option("RestoreOnRead", False, note="a read refused for a cold class (S3 GLACIER, "
                                   "DEEP_ARCHIVE, Azure Archive) also asks for its restore (restores cost money)")
    restore_days: int = option("RestoreDays", 7, minimum=1, maximum=36500,
                               note="S3: days a restored copy stays readable (Azure: no effect)")
    restore_tier: str = option("RestoreTier", "Standard", choices=("Standard", "Bulk", "Expedited", "High"),
                               note="S3: Standard, Bulk or Expedited; Azure (rehydrate priority): Standard or High")


@dataclass(frozen=True)
class S3Config:
    bucket_name: str = option("BucketName", required=True)
    region: str = option("Region", required=True)
    access_key: str | None = option("AccessKey", None)
    secret_key: str | None = option("SecretKey", None, secret=True)
    endpoint: str = option("Endpoint", "")
    virtual_addressing: bool = option("VirtualAddressing", True)
    connect_timeout: int = option("ConnectTimeout", 30, aliases=("ConnectionTimeout",))
    request_timeout: int = option("RequestTimeout", 1200)
    max_connections: int = option("MaxConnections", 25, minimum=1)
    max_retries: int = option("MaxRetries", 10)
    enable_aws_sdk_logs: bool = option("EnableAwsSdkLogs", False)
    use_transfer_manager: bool = option("UseTransferManager", False)
    transfer_pool_size: int = option("TransferPoolSize", 10, minimum=1)
    transfer_buffer_size_mb: int = option("TransferBufferSize", 5, minimum=5, maximum=5 * 1024)
    storage_class: str | None = option("StorageClass", None, choices=S3_STORAGE_CLASSES)
    tags: tuple[tuple[str, str], ...] = option("Tags", (), kind="string_map")
    server_side_encryption: str | None = option("ServerSideEncryption", None, choices=S3_SERVER_SIDE_ENCRYPTIONS,
                                                note="sent with every write (x-amz-server-side-encryption), for "
                                                     "buckets whose policy demands it")
    sse_kms_key_id: str | None = option("SseKmsKeyId", None, note="the KMS key (id, ARN or alias) of "
                                                                  "ServerSideEncryption aws:kms; absent: the "
                                                                  "bucket's or the account's default key")
    https_ca_certificates: str = option("HttpsCACertificates", "", scope=GLOBAL)


@dataclass(frozen=True)
class AzureConfig:
    """``AzureBlobStorage``. Timeouts and retries are beyond the official plugin (which used SDK defaults).

    Exactly one of ``connection_string`` (the official plugin's option) and ``account_url`` (``AccountUrl``,
    or ``AccountName`` made into its public blob URL) is set; with ``account_url`` the client authenticates
    with azure-identity's ``DefaultAzureCredential`` (docs/credentials.md)."""

    container_name: str = option("ContainerName", required=True, strip=True)
    connection_string: str | None = option("ConnectionString", None, secret=True, strip=True,
                                           note="required unless AccountUrl or AccountName is set")
    account_url: str | None = option("AccountUrl", None, strip=True,
                                     note="https://ACCOUNT.blob.core.windows.net: no account key, "
                                          "azure-identity's DefaultAzureCredential")
    account_name: str | None = option("AccountName", None, strip=True,
                                      note="the same as AccountUrl https://ACCOUNT.blob.core.windows.net")
    create_container_if_not_exists: bool = option("CreateContainerIfNotExists", True)
    access_tier: str | None = option("AccessTier", None, choices=AZURE_ACCESS_TIERS)
    connect_timeout: int = option("ConnectTimeout", 20, minimum=1)
    request_timeout: int = option("RequestTimeout", 60, minimum=1)
    max_retries: int = option("MaxRetries", 3, maximum=100)


@dataclass(frozen=True)
class GcsConfig:
    """``GoogleCloudStorage``. Without ``service_account_file``, application-default credentials are used;
    ``emulator_host`` (from the STORAGE_EMULATOR_HOST environment variable) points the client at an
    emulator with anonymous credentials; ``project`` comes from GOOGLE_CLOUD_PROJECT."""

    bucket_name: str = option("BucketName", required=True)
    service_account_file: str | None = option("ServiceAccountFile", None)
    emulator_host: str | None = None
    project: str | None = None
    connect_timeout: int = option("ConnectTimeout", 60, minimum=1)
    request_timeout: int = option("RequestTimeout", 60, minimum=1)
    retry_timeout: int = option("RetryTimeout", 120)


@dataclass(frozen=True)
class PluginConfig:
    section: str
    common: CommonConfig
    provider: S3Config | AzureConfig | GcsConfig


# --- rules the option table cannot say (more in config_rules) -------------------------------------------

def _restore_tier_fits_the_provider(section: Section, values: dict) -> None:
    allowed = RESTORE_TIERS.get(section.name)
    if allowed is not None and values["restore_tier"] not in allowed:
        section.bad("RestoreTier", values["restore_tier"], f"one of {', '.join(allowed)} for {section.name}")


def cold_storage_warnings(name: str, provider) -> list[str]:
    """Start-up and check-config warnings for a class or tier whose objects must be restored before reads."""
    if isinstance(provider, S3Config) and provider.storage_class in S3_COLD_CLASSES:
        option_name, value = "StorageClass", provider.storage_class
    elif isinstance(provider, AzureConfig) and provider.access_tier in AZURE_COLD_TIERS:
        option_name, value = "AccessTier", provider.access_tier
    else:
        return []
    return [f"{name}.{option_name} is {value}: every object written goes to a class that must be restored "
            "before it can be read; until then, reads of it fail (HTTP 503 on Orthanc >= 1.12.8 with the v3 "
            "storage API, 500 otherwise) with a log line naming the object, and POST /objstore/restore "
            "(or RestoreOnRead: true) restores them; use GLACIER_IR / Cool / Cold for files read at once"]


def _migration_means_write_to_object_storage(section: Section, values: dict) -> None:
    """The official plugin's deprecated MigrationFromFileSystemEnabled, when HybridMode says nothing else."""
    if section.value(MIGRATION_FROM_FILE_SYSTEM) and values["hybrid_mode"] == HYBRID_DISABLED:
        values["hybrid_mode"] = HYBRID_WRITE_TO_OBJECT_STORAGE


def _encryption(section: Section, values: dict) -> None:
    """StorageEncryption, a nested section: its keys loaded, or None when it is absent or disabled."""
    raw = values["encryption"]
    values["encryption"] = None if raw is ABSENT else _encryption_section(section, raw)


def _encryption_section(parent: Section, raw) -> EncryptionConfig | None:
    section = Section(f"{parent.name}.{ENCRYPTION_SECTION}", raw, parent.problems, options(ENCRYPTION_SECTION))
    parent.children.append(section)
    enabled = section.value(ENCRYPTION_ENABLE)
    values = section.read(EncryptionConfig)
    if not enabled:
        return None
    if values["master_key"] is ABSENT:
        section.problem("MasterKey", "missing; encryption is enabled, so it is required "
                                     "(set \"Enable\": false to store objects unencrypted)")
        return None
    current = rules.master_key(section, "MasterKey", values["master_key"])
    previous, old = values["previous_master_keys"], []
    if previous is not ABSENT and previous is not None:
        if not isinstance(previous, list):
            section.problem("PreviousMasterKeys", "must be an array of [id, \"/path\"] pairs")
        else:
            old = [rules.master_key(section, f"PreviousMasterKeys[{i}]", item) for i, item in enumerate(previous)]
    keys = [key for key in old if key is not None]
    if current is None or len(keys) != len(old):
        return None
    rules.distinct_key_ids(section, current, keys)
    return EncryptionConfig(**{**values, "master_key": current, "previous_master_keys": tuple(keys)})


def _tiering(section: Section, values: dict) -> None:
    """Tiering, a nested section: parsed, or None when it is absent; refused when HybridMode is Disabled."""
    raw = values["tiering"]
    values["tiering"] = None
    if raw is ABSENT or raw is None:
        return
    tiering = Section(f"{section.name}.{TIERING_SECTION}", raw, section.problems, options(TIERING_SECTION))
    section.children.append(tiering)
    read = tiering.read(TieringConfig)
    if not isinstance(raw, dict):
        return
    parsed: dict[str, Any] = {}
    if read["check_every"] is ABSENT:
        read["check_every"] = default_of(TieringConfig, "check_every")
    for field, name in (("move_after", "MoveToObjectStorageAfter"), ("check_every", "CheckEvery")):
        try:
            parsed[field] = parse_duration(read[field])
        except ValueError as exc:
            if read[field] is not ABSENT:
                tiering.problem(name, str(exc))
    if read["window"] is not None:
        try:
            parsed["window"] = Window.parse(read["window"])
        except ValueError as exc:
            tiering.problem("Window", str(exc))
    if values["hybrid_mode"] == HYBRID_DISABLED:
        section.problem(TIERING_SECTION, "only works in hybrid mode; set HybridMode to \"WriteToFileSystem\" or "
                                         "\"WriteToObjectStorage\", or remove the Tiering section")
    elif len(parsed) == 2 + (read["window"] is not None):
        values["tiering"] = TieringConfig(**{**read, **parsed})


def _indexer(section: Section, values: dict) -> None:
    """Indexer, a nested section: parsed, or None when it is absent (the indexer is off by default)."""
    raw = values["indexer"]
    values["indexer"] = None
    if raw is ABSENT or raw is None:
        return
    indexer = Section(f"{section.name}.{INDEXER_SECTION}", raw, section.problems, options(INDEXER_SECTION))
    section.children.append(indexer)
    read = indexer.read(IndexerConfig)
    if not isinstance(raw, dict):
        return
    problems = len(section.problems)
    prefixes = read["prefixes"]
    if prefixes is not ABSENT:
        if (not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) for p in prefixes)
                or len(set(prefixes)) != len(prefixes)):
            indexer.bad("Prefixes", prefixes, 'a non-empty array of distinct strings, the key prefixes to adopt, '
                                              'e.g. ["lake/"] ("" is the whole bucket)')
        else:
            read["prefixes"] = tuple(prefixes)
    interval = default_of(IndexerConfig, "interval") if read["interval"] is ABSENT else read["interval"]
    try:
        read["interval"] = parse_duration(interval)
        if read["interval"] < 1:
            indexer.problem("Interval", f"{interval!r} is too short; allowed: at least \"1s\"")
    except ValueError as exc:
        indexer.problem("Interval", str(exc))
    if len(section.problems) == problems:
        values["indexer"] = IndexerConfig(**read)


def _optional_section(section: Section, values: dict, field: str, name: str, cls) -> None:
    """A nested section that is on by default: absent or true -> its defaults, false/null -> None (off),
    an object -> its options (``"Enable": false`` inside it also turns it off)."""
    raw = values[field]
    if raw is ABSENT or raw is True:
        values[field] = cls()
        return
    if raw is False or raw is None:
        values[field] = None
        return
    nested = Section(f"{section.name}.{name}", raw, section.problems, (ENABLE, *options(name)))
    section.children.append(nested)
    enabled = nested.value(ENABLE)
    read = nested.read(cls)
    values[field] = cls(**read) if enabled and isinstance(raw, dict) else None


def _read_cache(section: Section, values: dict) -> None:
    _optional_section(section, values, "read_cache", READ_CACHE_SECTION, ReadCacheConfig)
    cache = values["read_cache"]
    if cache is not None and cache.folder and not os.path.isabs(cache.folder):
        section.problem(f"{READ_CACHE_SECTION}.Folder", f"{cache.folder!r} is not an absolute path; allowed: "
                                                         "an absolute folder path, or \"\" for no disk cache")


def _prefetch(section: Section, values: dict) -> None:
    _optional_section(section, values, "prefetch", PREFETCH_SECTION, PrefetchConfig)


COMMON_RULES = (rules.root_path_is_relative, _migration_means_write_to_object_storage, _encryption, _tiering,
                _indexer, _restore_tier_fits_the_provider, _read_cache, _prefetch)
PROVIDERS = {  # section → (its dataclass, its rules, the fields it takes from the environment)
    S3_SECTION: (S3Config, (rules.credentials_pair, rules.s3_tags, rules.s3_server_side_encryption),
                 rules.no_environment),
    AZURE_SECTION: (AzureConfig, (rules.azure_connection_string, rules.azure_account, rules.azure_container_name),
                    rules.no_environment),
    GCS_SECTION: (GcsConfig, (rules.service_account_file, rules.gcs_bucket_name), rules.gcs_environment),
}


def options(section: str) -> tuple[Option, ...]:
    """The options of ``section``: a provider section (the common options, then its own),
    ``ENCRYPTION_SECTION`` (inside any provider section) or ``GLOBAL_SECTION``."""
    if section == ENCRYPTION_SECTION:
        return (ENCRYPTION_ENABLE, *(spec for _, spec in declared(EncryptionConfig)))
    if section == TIERING_SECTION:
        return tuple(spec for _, spec in declared(TieringConfig))
    if section == INDEXER_SECTION:
        return tuple(spec for _, spec in declared(IndexerConfig))
    if section == READ_CACHE_SECTION:
        return (ENABLE, *(spec for _, spec in declared(ReadCacheConfig)))
    if section == PREFETCH_SECTION:
        return (ENABLE, *(spec for _, spec in declared(PrefetchConfig)))
    if section == GLOBAL_SECTION:
        classes = (CommonConfig, *(cls for cls, _, _ in PROVIDERS.values()))
        return tuple(dict.fromkeys(spec for cls in classes for _, spec in declared(cls, GLOBAL)))
    if section in PROVIDERS:
        return (*(spec for _, spec in declared(CommonConfig, "section")), MIGRATION_FROM_FILE_SYSTEM,
                *(spec for _, spec in declared(PROVIDERS[section][0], "section")))
    known = [*PROVIDERS, ENCRYPTION_SECTION, TIERING_SECTION, INDEXER_SECTION, READ_CACHE_SECTION, PREFETCH_SECTION,
             GLOBAL_SECTION]
    raise ValueError(f"unknown section {section!r}; known: {', '.join(known)}")


def _read(cls, section: Section, orthanc: Section, checks) -> dict:
    values = {**section.read(cls), **orthanc.read(cls, GLOBAL)}
    for rule in checks:
        rule(section, values)
    return values


def parse(configuration: dict, environ: Mapping[str, str] = os.environ) -> tuple[PluginConfig | None, list[str]]:
    """Reads the plugin's configuration out of Orthanc's whole configuration (a dict); ``environ`` is
    the process environment (GCS reads STORAGE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT from it)."""
    present = [name for name in PROVIDERS if name in configuration]
    if not present:
        return None, [f"no {' / '.join(PROVIDERS)} section in the configuration: the plugin is disabled "
                      "and Orthanc keeps its own storage"]
    if len(present) > 1:
        raise ConfigError(f"more than one storage section is configured ({', '.join(present)}); "
                          "keep exactly one")
    problems: list[str] = []
    name = present[0]
    provider_class, checks, from_environment = PROVIDERS[name]
    section = Section(name, configuration[name], problems, options(name))
    orthanc = Section(GLOBAL_SECTION, configuration, problems)
    common = CommonConfig(**_read(CommonConfig, section, orthanc, COMMON_RULES))
    provider = provider_class(**_read(provider_class, section, orthanc, checks), **from_environment(environ))
    if problems:
        raise ConfigError(problems)
    return PluginConfig(name, common, provider), section.unknown_option_warnings() + cold_storage_warnings(name,
                                                                                                          provider)
