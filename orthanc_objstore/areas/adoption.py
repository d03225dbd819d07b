"""Adopted attachments: DICOM attachments whose bytes are an object Orthanc did not write (``POST /objstore/adopt``).

An adopted attachment is kept as a **reference**: a small object under the attachment's own name, holding
``REFERENCE_MAGIC`` and then JSON naming the adopted object (its key in the same bucket), its size, the
SHA-256 of its DICOM bytes at adoption and whether Orthanc owns it. Reads follow it; nothing of the adopted
object is copied. One mechanism on both Orthancs: 1.10.1 has no custom data, and a reference under the
attachment's own name works with the deferred deletions, hybrid moves and the read cache as any object.
On 1.13 the attachment's custom data also says it is adopted (``Location.adopted``), so that range reads
know it before reading (the reference is shorter than the attachment); where the index keeps no custom data
(the PostgreSQL plugin 5 on 1.13), a range read that finds a reference follows it (``REFERENCE_MAX_SIZE``).
The official plugin cannot read adopted attachments (it would serve the reference): docs/adoption.md.

Wrong-patient safety: a reference is followed only when the adopted object still has the size and SHA-256
recorded at adoption (an object replaced in the lake is refused, ``IntegrityError``); a DICOM upload that
begins with ``REFERENCE_MAGIC`` is refused, so no upload can make a reference of its own.

How the create callback knows an adoption from an upload: the adopter posts the object's bytes to Orthanc's
``/instances`` after announcing them to ``PendingAdoptions`` (by size, then SHA-256); the create callback
of the DICOM attachment whose bytes match writes the reference instead of the bytes. The digest is computed
only for uploads of the size of a pending adoption.

``AdoptionRegistry`` keeps one small entry per adopted object under ``REGISTRY_FOLDER`` of the RootPath (in the
bucket: shared by replicas, through the encryption layer when encryption is on): which instance and attachment
each object became, and whether it is owned. It makes adoption idempotent and lets the adopter find the
instances whose object has vanished. This module knows neither Orthanc nor the configuration.
"""

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import IntegrityError, NotFound, StoreError
from ..storage.cached import ReadCache
from ..storage.protocol import OWNER_MARK, ColdState, Owner, Store
from .contract import Area, Location
from .naming import CONTENT_TYPE_DICOM

log = logging.getLogger("orthanc_objstore")

REFERENCE_MAGIC = b"ORTHANC-OBJSTORE-ADOPTED-REFERENCE/1\n"
REGISTRY_FOLDER = ".orthanc-objstore-adopted/"
# Every reference is shorter (a key has at most 1024 characters, 6 bytes each once escaped in JSON): a range read
# that ends beyond it, or begins at 0, shows whether the object read is a reference.
REFERENCE_MAX_SIZE = 8192


class RefusedUpload(StoreError):
    """An upload that could pass for a reference (it begins with ``REFERENCE_MAGIC``)."""


@dataclass(frozen=True)
class Reference:
    """What an adopted attachment stands for: the adopted object and what it held at adoption."""

    key: str
    size: int
    sha256: str
    owned: bool
    written_for: str = ""  # the plugin's own object (disaster recovery): the attachment uuid it was written for

    def encode(self) -> bytes:
        body = {"Key": self.key, "Size": self.size, "Sha256": self.sha256, "Owned": self.owned}
        if self.written_for:
            body["WrittenFor"] = self.written_for
        encoded = REFERENCE_MAGIC + json.dumps(body, separators=(",", ":")).encode()
        assert len(encoded) < REFERENCE_MAX_SIZE, len(encoded)
        return encoded

    @classmethod
    def decode(cls, data: bytes, where: str) -> "Reference":
        """The reference in ``data`` (which begins with ``REFERENCE_MAGIC``); ``IntegrityError`` when damaged."""
        try:
            body = json.loads(bytes(data[len(REFERENCE_MAGIC):]))
            reference = cls(body["Key"], body["Size"], body["Sha256"], body["Owned"], body.get("WrittenFor", ""))
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{where}: a damaged reference to an adopted object", where) from None
        if not (isinstance(reference.key, str) and reference.key and isinstance(reference.size, int)
                and isinstance(reference.sha256, str) and len(reference.sha256) == 64
                and isinstance(reference.owned, bool) and isinstance(reference.written_for, str)):
            raise IntegrityError(f"{where}: a damaged reference to an adopted object", where)
        return reference

    @classmethod
    def of(cls, key: str, data: bytes, owned: bool, written_for: Owner | None = None) -> "Reference":
        return cls(key, len(data), hashlib.sha256(data).hexdigest(), owned, written_for.uuid if written_for else "")

    @property
    def owner(self) -> Owner | None:
        """The attachment the adopted object was written for (the plugin's own objects), else None."""
        return Owner(self.written_for, CONTENT_TYPE_DICOM) if self.written_for else None


def is_reference(data: bytes) -> bool:
    return bytes(data[:len(REFERENCE_MAGIC)]) == REFERENCE_MAGIC


def is_internal(key: str, root_path: str = "") -> bool:
    """True for the plugin's own bookkeeping objects (owner mark, adoption registry): never adopted."""
    name = key[len(root_path):].lstrip("/") if root_path and key.startswith(root_path) else key
    return name == OWNER_MARK or name.startswith(REGISTRY_FOLDER)


class Lake:
    """Reads and deletes adopted objects: ``raw`` is the object storage below the encryption layer (with the
    read cache when there is one); ``decrypting``, the same storage through the encryption layer (None
    without encryption), for the plugin's own encrypted objects met in disaster recovery."""

    def __init__(self, raw: Store, decrypting: Store | None = None, fresh: "Lake | None" = None,
                 cache: ReadCache | None = None):
        """``fresh``: the same without the read cache, for adoption (which must read what is in the bucket now);
        ``cache``: the read cache below ``raw``, when there is one."""
        self.raw = raw
        self.decrypting = decrypting
        self.fresh = fresh or self
        self.cache = cache

    def read(self, key: str, owner: Owner | None = None) -> bytes:
        """The DICOM bytes of ``key``: as stored, or decrypted when it is one of the plugin's encrypted objects
        (``owner``: the attachment it was written for, needed by format A3). No owner check on plain objects:
        a lake object has no owner record; the reference's digest checks it instead."""
        data = self.raw.get(key)
        if self.decrypting is not None and owner is not None and not _looks_dicom(data):
            return self.decrypting.get(key, owner=owner)
        return data

    def forget(self, key: str) -> None:
        """Drops what the read cache holds of ``key`` (it may have changed in the bucket)."""
        if self.cache is not None:
            self.cache.discard(key)

    def delete(self, key: str) -> None:
        self.raw.delete(key)  # through the read cache, when there is one: it forgets the object too


def _looks_dicom(data: bytes) -> bool:
    return bytes(data[128:132]) == b"DICM"


class PendingAdoptions:
    """Objects being posted to Orthanc for adoption, from ``add`` until ``done``.

    Identical bytes (duplicates in a lake, or a disaster recovery meeting the copy of a stored instance) are
    posted one after the other: ``add`` waits while an adoption of the same size and SHA-256 is in flight.
    Otherwise the attachment of one post could take the other's reference, and its removal by Orthanc, after the
    other's ``done``, would be taken for a deletion of that (maybe owned) object."""

    def __init__(self):
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._by_size: dict[int, dict[str, Reference]] = {}
        self._taken: dict[Reference, str] = {}
        self._in_flight: set[tuple[int, str]] = set()

    def add(self, reference: Reference) -> None:
        identity = (reference.size, reference.sha256)
        with self._free:
            self._free.wait_for(lambda: identity not in self._in_flight)
            self._in_flight.add(identity)
            self._by_size.setdefault(reference.size, {})[reference.sha256] = reference

    def done(self, reference: Reference) -> str | None:
        """Forgets ``reference``; the uuid of the attachment that took it, or None when none did."""
        with self._free:
            same_size = self._by_size.get(reference.size, {})
            same_size.pop(reference.sha256, None)
            if not same_size:
                self._by_size.pop(reference.size, None)
            self._in_flight.discard((reference.size, reference.sha256))
            self._free.notify_all()
            return self._taken.pop(reference, None)

    def give_back(self, uuid: str) -> Reference | None:
        """The pending adoption that attachment ``uuid`` took, when Orthanc removes that attachment before it has
        answered the adoption's upload: Orthanc 1.10.1 writes the attachments of an instance it already holds,
        then removes them and answers AlreadyStored (as after a failure to store the instance). Given back, the
        attachment was no adoption, and ``done`` answers that none took it."""
        with self._lock:
            for reference, taker in self._taken.items():
                if taker == uuid:
                    del self._taken[reference]
                    return reference
        return None

    def take(self, uuid: str, data: bytes) -> Reference | None:
        """The pending adoption whose bytes are ``data`` (None for an ordinary upload), now taken by ``uuid``."""
        with self._lock:
            if len(data) not in self._by_size:
                return None
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            reference = self._by_size.get(len(data), {}).pop(digest, None)
            if reference is not None:
                self._taken[reference] = uuid
            return reference


class AdoptingArea:
    """``inner`` with adopted DICOM attachments stored as references (see the module docstring)."""

    def __init__(self, inner: Area, lake: Lake, pending: PendingAdoptions | None = None):
        self.inner = inner
        self.lake = lake
        self.pending = pending or PendingAdoptions()
        # uuid -> reference of the adopted attachments this process knows (adopted here, or loaded from the
        # registry): on 1.10.1 (no custom data) a removal learns from it whether the object is owned
        self.adopted: dict[str, Reference] = {}
        self.on_removed = lambda uuid, reference: None  # the adopter forgets the registry entry there

    def __repr__(self) -> str:
        return repr(self.inner)

    def create(self, uuid: str, content_type: int, data: bytes) -> Location:
        if content_type != CONTENT_TYPE_DICOM:
            return self.inner.create(uuid, content_type, data)
        if is_reference(data):
            raise RefusedUpload("refused: the file begins with the marker of orthanc-objstore's references to "
                                "adopted objects, which no DICOM file does", uuid)
        reference = self.pending.take(uuid, data)
        if reference is None:
            return self.inner.create(uuid, content_type, data)
        location = self.inner.create(uuid, content_type, reference.encode())
        self.lake.forget(reference.key)  # reads must see the bytes adopted now, not what a cache kept of before
        self.adopted[uuid] = reference
        log.info("attachment %s adopts %r (%d bytes, %s)", uuid, reference.key, reference.size,
                 "owned" if reference.owned else "not owned")
        return dataclasses.replace(location, size=reference.size, adopted=True)

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        data = self.inner.read(uuid, content_type, _stored(location))
        if content_type == CONTENT_TYPE_DICOM and is_reference(data):
            return self.follow(uuid, Reference.decode(data, f"attachment {uuid}"))
        return data

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        if content_type != CONTENT_TYPE_DICOM or (location is not None and not location.adopted):
            return self.inner.read_range(uuid, content_type, start, length, location)
        if location is None and uuid not in self.adopted:
            return self._range_of_unknown(uuid, start, length)
        return self._range_of_adopted(uuid, start, length, location)

    def _range_of_unknown(self, uuid: str, start: int, length: int) -> bytes:
        """A range of a DICOM attachment without custom data (an index that keeps none, such as some index
        plugins, or an attachment written before): it may be adopted, its object a reference. A reference is
        shorter than REFERENCE_MAX_SIZE: a range that begins at 0 shows its magic, one that ends beyond it
        comes back short; only a range inside the first REFERENCE_MAX_SIZE bytes needs a look at the start."""
        try:
            part = self.inner.read_range(uuid, CONTENT_TYPE_DICOM, start, length)
        except IntegrityError:  # shorter than the range: a reference, or a truncated file
            return self._follow_stored(uuid, start, length, None)
        if start == 0:
            head = part[:len(REFERENCE_MAGIC)]
        elif start + length <= REFERENCE_MAX_SIZE:
            try:
                head = self.inner.read_range(uuid, CONTENT_TYPE_DICOM, 0, len(REFERENCE_MAGIC))
            except IntegrityError:  # shorter than the magic: no reference
                return part
        else:
            return part
        if not REFERENCE_MAGIC.startswith(bytes(head)):
            return part
        return self._follow_stored(uuid, start, length, part)

    def _follow_stored(self, uuid: str, start: int, length: int, part: bytes | None) -> bytes:
        """The range through the reference the attachment's object holds; ``part`` (the range as stored) when
        it holds none; IntegrityError when it holds none and the range could not be read (``part`` None)."""
        stored = self.inner.read(uuid, CONTENT_TYPE_DICOM)
        if not is_reference(stored):
            if part is None:
                raise IntegrityError(f"attachment {uuid}: {len(stored)} bytes, shorter than the range of {length} "
                                     f"bytes at {start}", uuid)
            return part
        data = self.follow(uuid, Reference.decode(stored, f"attachment {uuid}"))
        return self._slice(uuid, data, start, length)

    def _range_of_adopted(self, uuid: str, start: int, length: int, location: Location | None) -> bytes:
        return self._slice(uuid, self.read(uuid, CONTENT_TYPE_DICOM, location), start, length)

    @staticmethod
    def _slice(uuid: str, data: bytes, start: int, length: int) -> bytes:
        part = data[start:start + length]
        if len(part) != length:
            raise IntegrityError(f"attachment {uuid}: {len(part)} bytes at {start} instead of {length} "
                                 "(the adopted object is shorter)", uuid)
        return part

    def reference(self, uuid: str, location: Location | None = None) -> Reference | None:
        """The reference of DICOM attachment ``uuid``, or None when it is not adopted."""
        data = self.inner.read(uuid, CONTENT_TYPE_DICOM, _stored(location))
        return Reference.decode(data, f"attachment {uuid}") if is_reference(data) else None

    def follow(self, uuid: str, reference: Reference) -> bytes:
        """The adopted object's bytes, refused unless they are what was adopted."""
        data = self._read_adopted(uuid, reference, self.lake)
        if not _matches(data, reference) and self.lake.fresh is not self.lake:
            # the cache may hold an older version (adopted again since, by another replica): ask the bucket
            self.lake.forget(reference.key)
            data = self._read_adopted(uuid, reference, self.lake.fresh)
        if not _matches(data, reference):
            raise IntegrityError(f"attachment {uuid} was adopted from {reference.key!r}, which has changed since "
                                 f"({len(data)} bytes, {reference.size} at adoption, or other content): refused, it "
                                 "may be another patient's file. If the change is right, abandon and adopt it "
                                 "again (POST /objstore/abandon-instance, then /objstore/adopt-instance)",
                                 reference.key)
        return data

    @staticmethod
    def _read_adopted(uuid: str, reference: Reference, lake: Lake) -> bytes:
        try:
            return lake.read(reference.key, reference.owner)
        except NotFound:
            raise NotFound(f"attachment {uuid} was adopted from {reference.key!r}, which is gone from the "
                           "storage", reference.key) from None

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        reference = None
        if content_type == CONTENT_TYPE_DICOM and self.pending.give_back(uuid) is not None:
            # never the adopted object, owned or not: it may be the very file of the instance Orthanc already holds
            self.adopted.pop(uuid, None)
            log.info("attachment %s: Orthanc removed it before answering its adoption (the instance was already "
                     "stored, or storing it failed); its reference goes, the adopted object stays", uuid)
            self.inner.remove(uuid, content_type, location)
            return
        if content_type == CONTENT_TYPE_DICOM:
            reference = self.adopted.pop(uuid, None)
            if reference is None and location is not None and location.adopted:
                try:
                    reference = self.reference(uuid, location)
                except StoreError as exc:
                    log.warning("attachment %s: its reference could not be read before its removal (%s); the "
                                "adopted object, if owned, stays behind", uuid, exc)
        self.inner.remove(uuid, content_type, location)
        if reference is None:
            return
        if reference.owned:
            self.lake.delete(reference.key)
        self.on_removed(uuid, reference)

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        return self.inner.locate(uuid, content_type)

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return self.inner.restore_tiers

    def cold_state(self, uuid: str, content_type: int) -> ColdState:
        return self.inner.cold_state(uuid, content_type)

    def restore(self, uuid: str, content_type: int, days: int, tier: str) -> ColdState:
        return self.inner.restore(uuid, content_type, days, tier)


def _matches(data: bytes, reference: Reference) -> bool:
    return len(data) == reference.size and hashlib.sha256(data).hexdigest() == reference.sha256


def _stored(location: Location | None) -> Location | None:
    """The location of the stored object itself (a reference is not the attachment's size)."""
    if location is None or not location.adopted:
        return location
    return dataclasses.replace(location, size=None, adopted=False)


class AdoptionRegistry:
    """One entry per adopted object (JSON, under ``REGISTRY_FOLDER``): ``store`` reads and writes them (through
    the encryption layer when there is one), ``listing`` lists them (the provider's ``list_sizes``)."""

    def __init__(self, store: Store, listing, root_path: str = ""):
        self.store = store
        self.listing = listing
        self.folder = (root_path.rstrip("/") + "/" if root_path else "") + REGISTRY_FOLDER

    def entry_key(self, key: str) -> str:
        return self.folder + hashlib.sha256(key.encode()).hexdigest() + ".json"

    def get(self, key: str) -> dict | None:
        try:
            entry = json.loads(self.store.get(self.entry_key(key)))
        except NotFound:
            return None
        except ValueError:
            log.warning("adoption registry: the entry of %r is damaged; it is written again", key)
            return None
        return entry if isinstance(entry, dict) and entry.get("Key") == key else None

    def put(self, key: str, instance: str, attachment: str, reference: Reference) -> None:
        entry = {"Key": key, "Instance": instance, "Attachment": attachment, "Owned": reference.owned,
                 "Size": reference.size, "Sha256": reference.sha256, "WrittenFor": reference.written_for}
        self.store.put(self.entry_key(key), json.dumps(entry).encode())

    def forget(self, key: str) -> None:
        self.store.delete(self.entry_key(key))

    def entry_keys(self) -> list[str]:
        """The names of the registry's entries (one listing)."""
        return [entry_key for entry_key, _ in self.listing.list_sizes(self.folder)]

    def entries(self, entry_keys: Iterable[str] | None = None) -> Iterator[dict]:
        """The entries named ``entry_keys`` (all of them when None); damaged or vanished ones are skipped."""
        for entry_key in self.entry_keys() if entry_keys is None else entry_keys:
            try:
                entry = json.loads(self.store.get(entry_key))
            except (NotFound, ValueError):
                continue
            if isinstance(entry, dict) and isinstance(entry.get("Key"), str):
                yield entry


def reference_of(entry: dict) -> Reference:
    return Reference(entry["Key"], entry["Size"], entry["Sha256"], entry["Owned"], entry.get("WrittenFor", ""))
