"""Assembles the storage area described by a ``PluginConfig``: provider, wrappers, naming, router.

This is the only place that knows which classes make up a deployment; the glue calls ``build_area``
once at start-up. Providers are imported lazily so that an S3 deployment never imports the Azure
or Google SDKs (and a missing SDK gives an install hint instead of an ImportError).
"""

import datetime
import importlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from .areas.adoption import AdoptingArea, AdoptionRegistry, Lake
from .areas.contract import FILE_SYSTEM, OBJECT_STORAGE, Area, ObjectArea
from .areas.deferred import DeferredDeletions, DeferredRemovalArea
from .areas.deletion_queue import DeletionJournal
from .areas.hybrid import HybridArea
from .areas.naming import LEGACY, Naming
from .config.sections import (
    AZURE_SECTION,
    GCS_SECTION,
    HYBRID_DISABLED,
    HYBRID_WRITE_TO_FILE_SYSTEM,
    HYBRID_WRITE_TO_OBJECT_STORAGE,
    S3_SECTION,
    CommonConfig,
    EncryptionConfig,
    PluginConfig,
)
from .crypto.keys import Keyring
from .errors import BucketNotFound, ConfigError, NoCredentials, StoreError
from .jobs import adopt, restore, steps
from .metrics.metered import MeteredArea, StorageMetrics
from .storage import encrypted as encryption
from .storage.budget import ByteBudget
from .storage.cached import CachedStore, ReadCache
from .storage.protocol import (
    OWNER_MARK,
    OWNERLESS_ACCEPT,
    OWNERLESS_REFUSE,
    Listing,
    OwnerMarking,
    StartupCheck,
    Store,
)
from .storage.providers.filesystem import FileSystemStore

log = logging.getLogger(__name__)

_PROVIDERS = {
    S3_SECTION: ("orthanc_objstore.storage.providers.s3", "S3Store", "boto3"),
    AZURE_SECTION: ("orthanc_objstore.storage.providers.azure", "AzureStore", "azure-storage-blob"),
    GCS_SECTION: ("orthanc_objstore.storage.providers.gcs", "GcsStore", "google-cloud-storage"),
}


def provider_class(section: str):
    """The store class of a provider section; ConfigError (with an install hint) when its SDK is missing.
    No network: ``check-config`` calls it too."""
    module_name, class_name, package = _PROVIDERS[section]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("orthanc_objstore"):
            raise ConfigError(f"{section}: this provider is not available in this version") from None
        raise ConfigError(f"{section}: the Python package {package!r} is missing from the plugin's "
                          f"environment ({exc.name}); install it with pip next to orthanc-objstore") from None
    return getattr(module, class_name)


def provider_store(config: PluginConfig) -> Store:
    """The provider's store, created once and shared by every thread."""
    store = provider_class(config.section)(config.provider)
    _check_container(store, config)
    _mark_owners(store, config)
    return store


def _mark_owners(store: Store, config: PluginConfig) -> None:
    """OwnerlessObjects: the time after which an object without an owner record is refused (see
    ``protocol.check_owner``): the server's time of the RootPath's owner mark, created on the first start
    (AcceptBeforeMark, the default), the beginning of time (Refuse), or none (Accept). Stores without
    ``mark_owners`` (the file system: no metadata at all) accept every object without a record."""
    policy = config.common.ownerless_objects
    if policy == OWNERLESS_ACCEPT or not isinstance(store, OwnerMarking):
        return
    if policy == OWNERLESS_REFUSE:
        store.owners_since = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        return
    root = config.common.root_path
    key = (root if not root or root.endswith("/") else root + "/") + OWNER_MARK
    try:
        store.owners_since = store.mark_owners(key)
    except StoreError as exc:
        log.warning("%s: could not read or create the owner mark %s (%s); objects without an owner record are "
                    "accepted until a start-up that can", config.section, store.describe(key), exc)


def _check_container(store: Store, config: PluginConfig) -> None:
    """Refuses to start when the bucket/container is known to be missing or no credentials can be had at
    all (``NoCredentials``: an Azure identity chain that found none); tolerates a store that is down.

    ``StartupCheck.check_bucket()`` is the providers' one start-up hook: S3 and GCS check that the bucket
    exists; Azure creates its container there when CreateContainerIfNotExists is true (the official
    behaviour). Stores without a bucket (memory, file system, a test's) have no such check.
    """
    if not isinstance(store, StartupCheck):
        return
    try:
        store.check_bucket()
    except BucketNotFound:
        raise ConfigError(f"{config.section}: the bucket/container {store!r} does not exist; create it "
                          "first (the plugin creates none, except an Azure container with "
                          "CreateContainerIfNotExists)") from None
    except NoCredentials as exc:
        raise ConfigError(f"{config.section}: {exc}") from None
    except StoreError as exc:
        log.warning("%s: could not check the bucket at start-up (%s); going on, every operation will be "
                    "retried against it", config.section, exc)


def keyring(config: EncryptionConfig) -> Keyring:
    """The master keys of the StorageEncryption section: the current one, and the previous ones to read with."""
    return Keyring(config.master_key.id, config.master_key.key,
                   [(key.id, key.key) for key in config.previous_master_keys])


def input_budget(config: EncryptionConfig) -> ByteBudget:
    """The MaxConcurrentInputSize budget, to share between the stores of one deployment."""
    return ByteBudget(config.max_concurrent_input_size_mb * 1024 * 1024)


def wrap_encryption(store: Store, common: CommonConfig, budget: ByteBudget | None = None) -> Store:
    """The store itself, or the store behind the encryption layer when StorageEncryption is enabled."""
    if common.encryption is None:
        return store
    return encryption.EncryptedStore(store, keyring(common.encryption), common.encryption.format,
                                     budget or input_budget(common.encryption))


def object_naming(common: CommonConfig) -> Naming:
    return Naming(structure=common.storage_structure, root_path=common.root_path,
                  encrypted=common.encryption is not None,
                  legacy_unknown_files=common.enable_legacy_unknown_files)


def file_system_area(common: CommonConfig, budget: ByteBudget | None = None) -> ObjectArea:
    """Orthanc's own StorageDirectory layout (``aa/bb/uuid``), as the file-system side of hybrid mode."""
    store = wrap_encryption(FileSystemStore(common.storage_directory, fsync=common.sync_storage_area), common,
                            budget)
    return ObjectArea(store, Naming(structure=LEGACY), storage_name=FILE_SYSTEM)


def build_hybrid_area(objects: Area, file_system: Area, mode: str, on_fallback=None) -> HybridArea:
    """The hybrid area for ``HybridMode`` ``mode`` (config.sections has already refused unknown modes)."""
    if mode == HYBRID_WRITE_TO_FILE_SYSTEM:
        primary, secondary = file_system, objects
    elif mode == HYBRID_WRITE_TO_OBJECT_STORAGE:
        primary, secondary = objects, file_system
    else:
        raise ValueError(f"not a hybrid mode: {mode!r}")
    return HybridArea(primary, secondary, file_system=file_system, object_storage=objects, on_fallback=on_fallback)


def storage_metrics(config: PluginConfig) -> StorageMetrics:
    """The metrics of this deployment: per storage side, with hybrid fallbacks and move jobs in hybrid mode."""
    return StorageMetrics(hybrid=config.common.hybrid_mode != HYBRID_DISABLED, move_outcomes=steps.OUTCOMES,
                          restore_outcomes=restore.OUTCOMES, adopt_outcomes=adopt.OUTCOMES)


@dataclass(frozen=True)
class Adoption:
    """What the adopter needs besides Orthanc: the area that writes references, the registry, the listing."""

    area: AdoptingArea
    registry: AdoptionRegistry
    listing: Listing
    root_path: str


def with_adoption(config: PluginConfig, area: Area, provider: Store, cache: ReadCache | None = None,
                  budget: ByteBudget | None = None) -> tuple[Area, "Adoption | None"]:
    """``area`` able to hold adopted attachments (``areas.adoption``): reads follow references on every provider;
    adopting needs a provider that lists (``Adoption`` None otherwise). ``budget``: the MaxConcurrentInputSize
    budget of ``area``'s encryption layer, shared by the lake's and the registry's."""
    common = config.common
    if common.encryption is not None and budget is None:
        budget = input_budget(common.encryption)

    def decrypting(store: Store) -> Store | None:
        return wrap_encryption(store, common, budget) if common.encryption is not None else None

    fresh = Lake(provider, decrypting(provider))
    lake = fresh
    if cache is not None:
        cached = CachedStore(provider, cache)
        lake = Lake(cached, decrypting(cached), fresh, cache)
    adopting = AdoptingArea(area, lake)
    if not isinstance(provider, Listing):
        return adopting, None
    registry = AdoptionRegistry(decrypting(provider) or provider, provider, common.root_path)
    return adopting, Adoption(adopting, registry, provider, common.root_path)


@dataclass(frozen=True)
class Storage:
    """What ``build_storage`` assembled: the area Orthanc's callbacks talk to; in hybrid mode its sides by
    storage name (``FILE_SYSTEM``, ``OBJECT_STORAGE``), between which move jobs move files; ``areas``, the
    plain areas in the order reads try them (primary first); ``provider``, the object storage's own store
    (under any wrapper), for what only a provider can do (``Listing``); ``deletions``, the drainer of the
    deferred deletions when ``area`` queues its removals (the glue starts and stops it)."""

    area: Area
    areas: tuple[Area, ...]
    provider: Store
    sides: Callable[[str], Area] | None = None
    deletions: DeferredDeletions | None = None
    immediate: Area | None = None  # with deferred deletions, the area that deletes at once (the orphan reaper's)
    adoption: "Adoption | None" = None  # adopted objects (POST /objstore/adopt); None when the provider cannot list

    def side(self, name: str) -> Area:
        """The area of storage ``name``; without hybrid mode, the one area is the object storage."""
        if self.sides is not None:
            return self.sides(name)
        if name != OBJECT_STORAGE:
            raise LookupError(f"no {name} storage without hybrid mode")
        return self.area


def build_storage(config: PluginConfig, store: Store | None = None, metrics: StorageMetrics | None = None,
                  cache: ReadCache | None = None, defer_deletions: bool = False) -> Storage:
    """The storage of ``config``. ``store`` replaces the provider (tests); with ``metrics``, each side is a
    ``MeteredArea`` (the offline tools pass none: they need the bare areas); ``cache`` as ``build_area``'s;
    ``defer_deletions``: removals queued as ``DelayedDeletion`` says (Orthanc's storage, not the offline
    tools), and the sides then see the queue; Orthanc's storage also holds adopted attachments (``with_adoption``)."""
    provider = store or provider_store(config)
    # one MaxConcurrentInputSize budget for every encryption layer of Orthanc's storage
    budget = input_budget(config.common.encryption) if config.common.encryption else None
    area = build_area(config, provider, metrics, cache, budget)
    areas = (area.primary, area.secondary) if isinstance(area, HybridArea) else (area,)
    sides = area.side if isinstance(area, HybridArea) else None
    if not defer_deletions:  # the offline tools: the bare areas (they see a reference as the object it is)
        return Storage(area, areas, provider, sides)
    deferred, deletions = with_deferred_deletions(config, area, metrics)
    if deletions is not None and sides is not None:
        sides = deferred.side  # type: ignore[attr-defined]  # a DeferredRemovalArea's: aware of the queue
    adopting, adoption = with_adoption(config, deferred, provider, cache, budget)
    return Storage(adopting, areas, provider, sides, deletions, area, adoption)


def read_cache(common: CommonConfig) -> ReadCache | None:
    """The read cache of ``ReadCache`` (None when it is off)."""
    settings = common.read_cache
    if settings is None or (settings.memory_size_mb == 0 and not settings.folder):
        return None
    mb = 1024 * 1024
    try:
        return ReadCache(settings.memory_size_mb * mb, settings.max_entry_size_mb * mb, settings.folder,
                         settings.folder_size_mb * mb)
    except OSError as exc:
        raise ConfigError(f"ReadCache.Folder: {settings.folder!r} cannot be used as the disk cache "
                          f"({exc.strerror}); allowed: a folder Orthanc can create and write") from None


def build_area(config: PluginConfig, store: Store | None = None, metrics: StorageMetrics | None = None,
               cache: ReadCache | None = None, budget: ByteBudget | None = None) -> Area:
    """The area Orthanc's callbacks talk to. ``store`` replaces the provider (tests); with ``metrics``, each
    side is a ``MeteredArea`` (the offline tools pass none: they need the bare areas); with ``cache``, the
    object storage's reads go through it (below the encryption layer: it keeps the bytes as stored);
    ``budget``, the MaxConcurrentInputSize budget (one is made when None)."""
    common = config.common
    # Both sides of hybrid mode share one MaxConcurrentInputSize budget.
    if common.encryption and budget is None:
        budget = input_budget(common.encryption)
    provider = store or provider_store(config)
    stored = provider if cache is None else CachedStore(provider, cache)
    objects: Area = ObjectArea(wrap_encryption(stored, common, budget), object_naming(common))
    if metrics is not None:
        metrics.count_retries(provider)
        objects = MeteredArea(objects, metrics, OBJECT_STORAGE)
    if common.hybrid_mode == HYBRID_DISABLED:
        return objects
    file_system: Area = file_system_area(common, budget)
    if metrics is None:
        return build_hybrid_area(objects, file_system, common.hybrid_mode)
    return build_hybrid_area(objects, MeteredArea(file_system, metrics, FILE_SYSTEM), common.hybrid_mode,
                             on_fallback=metrics.fallbacks.add)


DELETIONS_FOLDER = "objstore-deletions"  # inside StorageDirectory, beside the move jobs' "objstore-jobs"


def deletions_folder(common: CommonConfig) -> str:
    """``DelayedDeletionFolder``, or ``StorageDirectory/objstore-deletions``; replicas sharing one folder each
    keep their own queue under their DatabaseServerIdentifier (a replica's queue survives its restart)."""
    if common.delayed_deletion_folder:
        base = os.path.abspath(common.delayed_deletion_folder)
    else:
        base = os.path.join(os.path.abspath(common.storage_directory), DELETIONS_FOLDER)
    own = [re.sub(r"[^A-Za-z0-9._-]", "_", common.server_identifier).lstrip(".")] if common.server_identifier else []
    return os.path.join(base, *own)


def bare_sides(area: Area) -> dict[str, ObjectArea]:
    """The ``ObjectArea`` of each storage inside ``area`` (under metering and the hybrid router)."""

    def bare(side):
        while not isinstance(side, ObjectArea):
            side = side.inner
        return side

    if isinstance(area, HybridArea):
        return {name: bare(side) for name, side in area.sides.items()}
    objects = bare(area)
    return {objects.storage_name: objects}


def with_deferred_deletions(config: PluginConfig, area: Area, metrics: StorageMetrics | None = None,
                            folder: str | None = None) -> tuple[Area, DeferredDeletions | None]:
    """``area`` with its removals queued and drained in batches (``DelayedDeletion``, on by default), and the
    drainer (the glue starts and stops it with Orthanc); ``(area, None)`` when the option is false.
    Raises ``ConfigError`` when the queue's folder cannot be used."""
    common = config.common
    if not common.delayed_deletion:
        return area, None
    sides = bare_sides(area)
    journal = DeletionJournal(folder or deletions_folder(common), fsync=common.sync_storage_area)
    deletions = DeferredDeletions(journal, {name: side.store for name, side in sides.items()},
                                  threads=common.delayed_deletion_threads,
                                  on_deleted=metrics.deferred_deleted if metrics else None,
                                  on_failed=metrics.deferred_failed if metrics else None)
    if metrics is not None:
        metrics.watch_deletions(deletions.pending)
    return DeferredRemovalArea(area, sides, deletions), deletions
