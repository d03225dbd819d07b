"""The offline commands ``migrate``, ``verify`` and ``re-encrypt``: every attachment of Orthanc's index, in parallel.

Each command reads an Orthanc configuration (``--config``), builds the plugin's own area from it
(``build.build_area``: the same provider, naming and encryption Orthanc would use), lists every
attachment of the index (``index``) and runs one step per attachment in a thread pool,
with a progress line and one output line per problem. Exit status: 0 when every attachment is
fine, 1 when any is not, 2 when the command cannot run (configuration, index).

* ``migrate``: Orthanc's own StorageDirectory (``aa/bb/uuid``, plain) → the object storage, under the
  plugin's names. A step is the move job's ``move.move_attachment`` (read, check size and MD5 against
  the index, write under the provider's checksum) with a source that is deleted only with
  ``--delete-source``, after the copy was read back and compared. An object already there with the
  indexed size is skipped (resumable).
* ``verify``: every attachment is where the configuration says (object storage; either side in
  hybrid mode) with the indexed size; ``--deep`` reads it back (decrypting) and checks the MD5.
* ``verify --orphans``: the other way round: objects in the object storage (under RootPath) that no
  attachment of the index names (their uuid is no attachment's), such as what a lost deletion queue
  or a crash left behind; ``--delete-orphans --yes`` deletes them (in batches). Objects modified less
  than ``--grace`` seconds ago are left out (an upload in progress has its object before the index
  names it), and so are objects whose name is not one the plugin gives (never deleted).
* ``re-encrypt``: every encrypted object whose header does not name the current master key (or the
  configured format) is read with any configured key, checked, written again and read back.
"""

import dataclasses
import logging
import os
import re
import sys
import time

from .. import build
from ..areas.contract import FILE_SYSTEM, OBJECT_STORAGE, ObjectArea
from ..areas.naming import LEGACY, Naming
from ..config import files as configfile
from ..config import sections as config
from ..errors import ConfigError, IntegrityError, NotFound, OwnerlessObject, StoreError
from ..jobs import steps as move
from ..jobs.steps import matches_index  # size and MD5 against the index
from ..storage.encrypted import KeyRotation
from ..storage.protocol import OWNER_MARK, Listing, Owner, OwnerStamping, delete_keys
from ..storage.providers.filesystem import FileSystemStore
from .index import index_path, read_rest_index, read_sqlite_index
from .progress import COPIED, CURRENT, FAILED, OK, REENCRYPTED, SKIPPED, TO_COPY, describe_attachment, run_steps

DEFAULT_WORKERS = 16  # object stores reward parallel requests; S3's default MaxConnections is 25


class Context:
    """What every command needs: the parsed configuration, the plugin's area and the index's attachments."""

    def __init__(self, arguments):
        self.arguments = arguments
        raw = configfile.read(arguments.config)
        self.base = arguments.config if os.path.isdir(arguments.config) else os.path.dirname(arguments.config)
        parsed, _ = config.parse(raw)
        if parsed is None:
            raise ConfigError(f"{arguments.config}: no storage section ({', '.join(config.PROVIDERS)})")
        # a relative StorageDirectory is relative to the configuration's folder, as Orthanc reads it
        self.storage_directory = os.path.join(self.base or ".", raw.get("StorageDirectory", "OrthancStorage"))
        self.plugin = parsed = dataclasses.replace(parsed, common=dataclasses.replace(
            parsed.common, storage_directory=self.storage_directory))
        storage = build.build_storage(parsed)
        self.sides = list(storage.areas)
        self.objects = storage.side(OBJECT_STORAGE)
        self.provider = storage.provider
        self.plaintext = parsed.common.encryption is None  # stored sizes are the attachments' sizes
        self.listings = {}  # id(area) -> listed_sizes(...), taken by the commands that can use one
        if arguments.orthanc:
            user = arguments.user or os.environ.get("ORTHANC_USER")
            password = arguments.password or os.environ.get("ORTHANC_PASSWORD")
            self.entries = read_rest_index(arguments.orthanc, user, password)
        else:
            self.entries = read_sqlite_index(index_path(raw, self.base or "."))


def listed_sizes(context: Context, area) -> dict | None:
    """{key: stored size} of the object storage's objects under its RootPath, in a few LIST requests, when
    its provider can list (``Listing``); None otherwise (and for the file-system side). Sizes are the stored
    ones (ciphertext when encrypted)."""
    if area is not context.objects or not isinstance(context.provider, Listing):
        return None
    root = area.naming.root_path
    return dict(context.provider.list_sizes(root if not root or root.endswith("/") else root + "/"))


def _where(area, key) -> str:
    return f"{area.storage_name} {area.store.describe(key)}"


def _head(area, uuid, content_type, listing=None, plaintext=False):
    """(key, size) of the attachment's object in ``area`` (primary name first, then legacy names), or None.
    A key missing from ``listing`` (``listed_sizes``, taken before) is missing without a request; a listed
    size is used as it is when the store holds ``plaintext``."""
    for key in area.naming.candidate_keys(uuid, content_type):
        if listing is not None and key not in listing:
            continue
        if listing is not None and plaintext:
            return key, listing[key]
        try:
            return key, area.store.head(key)
        except NotFound:
            continue
    return None


class _Source:
    """Orthanc's StorageDirectory as the move step's source; ``remove`` only when deleting was asked for."""

    def __init__(self, folder: str, delete: bool):
        self.files = FileSystemStore(folder, fsync=False)
        self.area = ObjectArea(self.files, Naming(structure=LEGACY), FILE_SYSTEM)
        self.delete = delete

    def read(self, uuid, content_type):
        return self.area.read(uuid, content_type)

    def locate(self, uuid, content_type):
        return self.area.locate(uuid, content_type)

    def remove(self, uuid, content_type):
        if self.delete:
            self.area.remove(uuid, content_type)


class _CheckedTarget:
    """The object area as the move step's target. Every provider's write is checked by the server against
    a checksum of the bytes sent (S3 Content-MD5 and botocore's CRC32, Azure's validate_content MD5, GCS's
    CRC32C), so a write that returns stored exactly those bytes; ``read_back`` also reads each object back
    and compares it (decrypting: it checks the encryption too)."""

    def __init__(self, area, read_back: bool):
        self.area, self.read_back = area, read_back

    def locate(self, uuid, content_type):
        return self.area.locate(uuid, content_type)

    def create(self, uuid, content_type, data):
        self.area.create(uuid, content_type, data)
        key = self.area.naming.key(uuid, content_type)
        if self.read_back and self.area.store.get(key, owner=Owner(uuid, content_type)) != data:
            raise IntegrityError(f"{_where(self.area, key)} does not read back as written", key)


def _owner(attachment) -> Owner:
    return Owner(attachment.uuid, attachment.content_type)


def _describe(entry) -> str:
    return describe_attachment(entry)


# ----------------------------------------------------------------------------------------------------
# One step per attachment: (outcome, problem or None)

def migrate_step(context: Context, source: _Source, target: _CheckedTarget, entry):
    attachment, objects = entry.attachment(), context.objects
    key = objects.naming.key(attachment.uuid, attachment.content_type)
    found = _head(objects, attachment.uuid, attachment.content_type, context.listings.get(id(objects)),
                  context.plaintext)
    size = found[1] if found is not None and found[0] == key else None
    if size == attachment.size:
        if not source.delete:
            return SKIPPED, None
        # deleting: check the copy fully first
        problem = matches_index(objects.store.get(key, owner=_owner(attachment)), attachment)
        if problem is None:
            source.remove(attachment.uuid, attachment.content_type)
            return SKIPPED, None
    if context.arguments.dry_run:
        path = source.files.path(source.area.naming.key(attachment.uuid, attachment.content_type))
        if not os.path.isfile(path):
            return FAILED, f"missing: {_describe(entry)} is not in the StorageDirectory ({path})"
        return TO_COPY, None
    outcome = move.move_attachment(attachment, source, target)
    if outcome == move.MISSING:
        return FAILED, (f"missing: {_describe(entry)} is neither in the StorageDirectory nor at "
                          f"{_where(objects, key)}")
    if outcome == move.SKIPPED and size is not None:
        return FAILED, (f"wrong size: {_describe(entry)} is not in the StorageDirectory and "
                          f"{_where(objects, key)} holds {size} bytes, the index says {attachment.size}")
    return (COPIED if outcome == move.MOVED else SKIPPED), None


def verify_step(context: Context, entry):
    attachment, deep = entry.attachment(), context.arguments.deep
    problems, good, tried = [], 0, []
    for area in context.sides:
        found = _head(area, attachment.uuid, attachment.content_type, context.listings.get(id(area)),
                      context.plaintext)
        tried.append(_where(area, area.naming.key(attachment.uuid, attachment.content_type)))
        if found is None:
            continue
        key, size = found
        if size != attachment.size:
            problems.append(f"wrong size: {_describe(entry)}: {_where(area, key)} holds {size} bytes, the index "
                            f"says {attachment.size}")
            continue
        if deep:
            try:
                problem = matches_index(area.store.get(key, owner=_owner(attachment)), attachment)
            except OwnerlessObject:
                provider = context.provider
                if not (context.arguments.stamp and isinstance(provider, OwnerStamping) and area is context.objects):
                    raise
                # proven by the MD5 of Orthanc's index, then given its record (the same check as before the
                # mark), on the version that was proven only
                version = provider.object_version(key)
                problem = matches_index(area.store.get(key), attachment)
                if problem is None:
                    provider.stamp_owner(key, _owner(attachment), version)
            if problem:
                problems.append(f"damaged: {_describe(entry)}: {_where(area, key)}: {problem}")
                continue
        good += 1
    if not good and not problems:
        problems.append(f"missing: {_describe(entry)} is not at {' nor at '.join(tried)}")
    return (OK if not problems else FAILED), "\n".join(problems) or None


def reencrypt_step(context: Context, entry):
    attachment, problems, done = entry.attachment(), [], None
    for area in context.sides:
        encrypted = area.store
        if not isinstance(encrypted, KeyRotation):  # _command checked that StorageEncryption is on
            raise TypeError(f"{area!r} is not encrypted")
        found = _head(area, attachment.uuid, attachment.content_type)
        if found is None:
            continue
        key = found[0]
        if encrypted.is_current(key):
            done = done or CURRENT
            continue
        owner = _owner(attachment)
        data = encrypted.get(key, owner=owner)
        problem = matches_index(data, attachment)
        if problem:
            problems.append(f"damaged: {_describe(entry)}: {_where(area, key)}: {problem}; not rewritten")
            continue
        encrypted.put(key, data, owner=owner)  # the owner metadata (and A3 binding) too
        if not encrypted.is_current(key) or matches_index(encrypted.get(key, owner=owner), attachment):
            problems.append(f"not verified: {_describe(entry)}: {_where(area, key)} does not read back as written")
            continue
        done = REENCRYPTED
    if done is None and not problems:
        problems.append(f"missing: {_describe(entry)} is in no storage")
    return (FAILED if problems else done), "\n".join(problems) or None


# ----------------------------------------------------------------------------------------------------
# Orphans: objects no attachment names

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def find_orphans(context: Context, grace: float, now: float | None = None, out=None):
    """(orphans [(key, size)], young, foreign): the objects of the object storage whose uuid is no
    attachment's; ``young`` such objects were left out as modified less than ``grace`` s ago; ``foreign``
    objects do not have a name the plugin gives. Raises ConfigError when the provider cannot list."""
    out = out or sys.stderr
    store = getattr(context.objects.store, "inner", context.objects.store)
    lister = getattr(store, "list_objects", None)
    if lister is None:
        raise ConfigError("verify --orphans: this storage cannot list its objects")
    known = {entry.uuid for entry in context.entries}
    root = context.objects.naming.root_path
    prefix = root if not root or root.endswith("/") else root + "/"
    now = time.time() if now is None else now
    orphans: list[tuple[str, int]] = []
    young = foreign = listed = 0
    for key, size, modified in lister(prefix):
        listed += 1
        if listed % 10000 == 0:
            print(f"orphans: {listed} objects listed, {len(orphans)} orphan(s) so far", file=out, flush=True)
        name = key[len(prefix):]
        if name == OWNER_MARK:  # the plugin's own mark of when owners began to be recorded, not an attachment
            continue
        match = _UUID.match(name.rsplit("/", 1)[-1])
        if match is None:
            foreign += 1
        elif match.group(0) not in known:
            if now - modified < grace:
                young += 1
            else:
                orphans.append((key, size))
    print(f"orphans: {listed} objects listed", file=out, flush=True)
    return orphans, young, foreign


def orphans_command(context: Context) -> int:
    arguments = context.arguments
    orphans, young, foreign = find_orphans(context, arguments.grace)
    for key, size in orphans:
        print(f"orphan: {context.objects.store.describe(key)} ({size} bytes)")
    total = sum(size for _, size in orphans)
    print(f"verify --orphans: {len(context.entries)} attachment(s) in the index; {len(orphans)} orphan object(s) "
          f"({total} bytes); {young} more modified in the last {arguments.grace:.0f} s left out; {foreign} "
          "object(s) with names the plugin does not give, left alone")
    if not arguments.delete_orphans or not orphans:
        return 1 if orphans else 0
    if not arguments.yes:
        print("error: --delete-orphans deletes the objects listed above; add --yes to confirm", file=sys.stderr)
        return 1
    failed = delete_keys(context.objects.store, [key for key, _ in orphans])
    for key, error in failed.items():
        print(f"failed: {key}: {error}", file=sys.stderr)
    print(f"deleted {len(orphans) - len(failed)} orphan object(s)" + (f", {len(failed)} failed" if failed else ""))
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------------
# Running a command

def _command(name: str, arguments) -> int:
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    try:
        context = Context(arguments)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    workers = arguments.workers
    if name == "verify" and (arguments.orphans or arguments.delete_orphans):
        try:
            return orphans_command(context)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except StoreError as exc:
            print(f"error: cannot list the objects: {exc}", file=sys.stderr)
            return 2
    if name in ("migrate", "verify"):
        try:
            context.listings = {id(area): listed_sizes(context, area) for area in context.sides}
        except StoreError as exc:
            print(f"error: cannot list the objects already stored: {exc}", file=sys.stderr)
            return 2
    if name == "migrate":
        source = _Source(context.storage_directory, arguments.delete_source and not arguments.dry_run)
        # deleting the only other copy: every copy is read back first
        target = _CheckedTarget(context.objects, arguments.read_back or arguments.delete_source)
        counts = run_steps("migrate", context.entries, lambda e: migrate_step(context, source, target, e), workers)
    elif name == "verify":
        counts = run_steps("verify", context.entries, lambda e: verify_step(context, e), workers)
    else:
        if context.plugin.common.encryption is None:
            print("error: re-encrypt needs StorageEncryption enabled in the configuration", file=sys.stderr)
            return 2
        counts = run_steps("re-encrypt", context.entries, lambda e: reencrypt_step(context, e), workers)
    summary = ", ".join(f"{files} {outcome} ({size} bytes)" for outcome, (files, size) in sorted(counts.items()))
    print(f"{name}: {len(context.entries)} attachment(s) in the index: {summary or 'nothing to do'}")
    return 1 if FAILED in counts else 0


def register(commands) -> None:
    """Adds the three commands to the ``orthanc-objstore`` argument parser (``cli``)."""
    helps = {"migrate": "copy Orthanc's StorageDirectory into the object storage, under the plugin's names",
             "verify": "check that every attachment of the index is in the storage, with its size (--deep: MD5)",
             "re-encrypt": "rewrite every object not encrypted under the current MasterKey"}
    for name, text in helps.items():
        parser = commands.add_parser(name, help=text, description=text)
        parser.add_argument("--config", required=True, help="Orthanc's configuration (file or folder)")
        parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="parallel transfers")
        parser.add_argument("--orthanc", metavar="URL", help="read the index through this running Orthanc's "
                            "REST API (any index back-end) instead of the SQLite file")
        parser.add_argument("--user", help="Orthanc user for --orthanc (or ORTHANC_USER)")
        parser.add_argument("--password", help="its password (better: ORTHANC_PASSWORD)")
        if name == "migrate":
            parser.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
            parser.add_argument("--delete-source", action="store_true",
                                help="delete each file from StorageDirectory once its copy is read back and checked")
            parser.add_argument("--read-back", action="store_true",
                                help="read every copy back and compare it (always with --delete-source)")
        if name == "verify":
            parser.add_argument("--deep", action="store_true", help="read every object back and check its MD5")
            parser.add_argument("--orphans", action="store_true", help="instead: list the objects of the object "
                                "storage that no attachment of the index names")
            parser.add_argument("--delete-orphans", action="store_true", help="list them and delete them "
                                "(with --yes)")
            parser.add_argument("--yes", action="store_true", help="confirm --delete-orphans")
            parser.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                                help="leave out objects modified less than this ago (uploads in progress; "
                                "default 3600)")
            parser.add_argument("--stamp", action="store_true",
                                help="with --deep: an object without owner record whose MD5 matches the index gets "
                                     "its owner record (S3, Azure, GCS), so that OwnerlessObjects no longer refuses it")
        parser.set_defaults(run=lambda arguments, name=name: _command(name, arguments))
