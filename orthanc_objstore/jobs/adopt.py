"""The adopter: turns objects already in the bucket into Orthanc instances without copying them (``areas.adoption``).

``adopt_instance(key, owned)`` reads the object (one at a time per worker), announces it to the area's
``PendingAdoptions``, posts it to Orthanc's ``/instances`` through the port and records the adoption in the
registry; the create callback of that upload writes a reference instead of the bytes. ``adopt_prefix``
does so for every object under a prefix with ``workers`` in parallel, then abandons the instances adopted
under that prefix whose object has vanished. ``abandon_instance`` deletes the instance of one adopted object
(through the port: Orthanc's own removal, whose callback deletes the object too when it is owned).

Objects the plugin wrote itself are recognised by their names: DICOM attachments (``<uuid>.dcm[.enc]``) are
adopted, decrypted with the configured keys when encrypted (disaster recovery); header, JSON and other
attachments, references and the plugin's bookkeeping objects are skipped. Anything Orthanc refuses (not
DICOM, truncated) is listed in ``Failed`` with Orthanc's reason; it never stops the others.
Orthanc-free: Orthanc through the port (``OrthancApi``), never ``orthanc.*``.
"""

import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..areas.adoption import AdoptingArea, AdoptionRegistry, Reference, is_internal, is_reference, reference_of
from ..areas.naming import CONTENT_TYPE_DICOM
from ..errors import NotFound, StoreError
from ..port.index import OrthancApi, OrthancCallError
from ..storage.protocol import Owner

log = logging.getLogger("orthanc_objstore")

SUCCESS, ALREADY_STORED, FAILURE = "Success", "AlreadyStored", "Failure"
ADOPTED, ABANDONED, FAILED = "adopted", "abandoned", "failed"  # the metrics' outcomes, with ALREADY_STORED_OUTCOME
ALREADY_STORED_OUTCOME = "already_stored"
OUTCOMES = (ADOPTED, ALREADY_STORED_OUTCOME, ABANDONED, FAILED)
_METRIC_OF = {SUCCESS: ADOPTED, ALREADY_STORED: ALREADY_STORED_OUTCOME, FAILURE: FAILED}
_OWN_NAME = re.compile(r"^([0-9a-fA-F-]{36})(\.dcm|\.json|\.dcm\.head|\.unk)(\.enc)?$")


class Skipped(Exception):
    """An object that is not adopted and is no failure either (the plugin's own non-DICOM objects)."""


@dataclass
class Outcome:
    status: str
    instance: str = ""
    attachment: str = ""
    error: str = ""

    def answer(self) -> dict:
        return {"Status": self.status, "InstanceId": self.instance, "AttachmentUuid": self.attachment,
                "Error": self.error}


@dataclass
class Counts:
    adopted: int = 0
    already_stored: int = 0
    abandoned: int = 0
    failed: list = field(default_factory=list)

    def answer(self) -> dict:
        return {"Adopted": self.adopted, "AlreadyStored": self.already_stored, "Abandoned": self.abandoned,
                "Failed": self.failed}


class Adopter:
    def __init__(self, api: OrthancApi, area: AdoptingArea, registry: AdoptionRegistry, listing,
                 root_path: str = "", workers: int = 4, on_outcome: Callable[[str], None] | None = None):
        """``on_outcome`` is told each object's outcome (``OUTCOMES``: adopted, already_stored, abandoned, failed),
        for the metrics."""
        self.api = api
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.area = area
        self.registry = registry
        self.listing = listing
        self.root_path = root_path.rstrip("/") + "/" if root_path else ""
        self.workers = workers
        area.on_removed = self._removed

    def load(self, entry_keys: Iterable[str] | None = None) -> int:
        """Learns the adopted attachments from the registry entries ``entry_keys`` (all when None; on 1.10.1 a
        removal needs them); returns how many."""
        count = 0
        for entry in self.registry.entries(entry_keys):
            try:
                self.area.adopted.setdefault(entry["Attachment"], reference_of(entry))
                count += 1
            except (KeyError, TypeError):
                continue
        return count

    # -- one object

    def adopt_instance(self, key: str, owned: bool) -> Outcome:
        """``POST /objstore/adopt-instance``: never raises, a store down or Orthanc refusing is a ``Failure``."""
        try:
            entry = self.registry.get(key)
        except StoreError as exc:
            outcome = Outcome(FAILURE, error=f"the storage: {exc}")
        else:
            outcome = self._attempt(key, owned, entry, skipped_fails=True)
        self.on_outcome(_METRIC_OF[outcome.status])
        return outcome

    def _adopt(self, key: str, owned: bool, entry: dict | None) -> Outcome:
        """Adopts ``key``, whose registry entry is ``entry`` (None: never adopted)."""
        owner = self._own_dicom_owner(key)
        if entry is not None and self._exists(entry.get("Instance")):
            return Outcome(ALREADY_STORED, entry["Instance"], entry.get("Attachment", ""))
        try:
            data = self.area.lake.fresh.read(key, owner)
        except NotFound:
            return Outcome(FAILURE, error=f"no object {key!r} in the storage")
        except StoreError as exc:
            return Outcome(FAILURE, error=f"cannot be read: {exc}")
        if not data:
            return Outcome(FAILURE, error="an empty object, not a DICOM file")
        if is_reference(data):
            raise Skipped(f"{key!r} is a reference written by orthanc-objstore for an adopted instance, not a "
                          "DICOM file: adopt the object it names")
        reference = Reference.of(key, data, owned, owner)
        self.area.pending.add(reference)
        try:
            answer = self.api.post_json("/instances", data)
        except OrthancCallError as exc:
            return Outcome(FAILURE, error=f"Orthanc refused it: {exc}")
        finally:
            attachment = self.area.pending.done(reference)
            del data
        instance = answer.get("ID", "") if isinstance(answer, dict) else ""
        if isinstance(answer, dict) and answer.get("Status") == ALREADY_STORED and instance:
            # Orthanc already had it (e.g. adopted by an adoption interrupted before its registry entry was
            # written): the attachment just written was removed again; the registry records the instance's own
            return self._already_stored(key, instance, reference)
        if attachment is None:
            return Outcome(FAILURE, instance, error="Orthanc stored the instance without handing its bytes as they "
                           "are to the storage (StorageCompression?): it is a copy, not an adoption")
        return Outcome(SUCCESS, instance, attachment, error=self._record(key, instance, attachment, reference))

    def _already_stored(self, key: str, instance: str, reference: Reference) -> Outcome:
        info = self.api.get_json(f"/instances/{instance}/attachments/dicom/info")
        uuid = info.get("Uuid") if isinstance(info, dict) else None
        if not isinstance(uuid, str) or not uuid:
            return Outcome(ALREADY_STORED, instance)
        try:
            same = self.area.reference(uuid) == reference
        except StoreError:
            same = False  # not readable as a reference: not this adoption's
        if same:
            self.area.adopted.setdefault(uuid, reference)
            return Outcome(ALREADY_STORED, instance, uuid, error=self._record(key, instance, uuid, reference))
        return Outcome(ALREADY_STORED, instance)

    def _record(self, key: str, instance: str, attachment: str, reference: Reference) -> str:
        """Writes the registry entry of an instance Orthanc holds now; "" or, when the store refused it, what to
        know (the instance is adopted all the same, and adopting the object again writes the entry)."""
        try:
            self.registry.put(key, instance, attachment, reference)
        except StoreError as exc:
            log.warning("adoption of %r: the instance is stored, its registry entry could not be written (%s)", key,
                        exc)
            return (f"adopted, but its registry entry could not be written ({exc}): adopt the object again to write "
                    "it, or the instance will not be abandoned when the object vanishes")
        return ""

    def abandon_instance(self, key: str) -> Outcome:
        """Removes the instance adopted from ``key``; never raises: a store down or Orthanc refusing is a
        ``Failure`` (the registry entry stays, and a later abandon tries again)."""
        try:
            entry = self.registry.get(key)
            if entry is None:
                return Outcome(FAILURE, error=f"no instance was adopted from {key!r}")
            instance = entry.get("Instance", "")
            if self._exists(instance):
                self.api.delete(f"/instances/{instance}")
            self.registry.forget(key)
        except (StoreError, OrthancCallError) as exc:
            return Outcome(FAILURE, error=f"could not be abandoned: {exc}")
        self.on_outcome(ABANDONED)
        return Outcome(SUCCESS, instance, entry.get("Attachment", ""))

    # -- a prefix

    def adopt_prefix(self, prefix: str, owned: bool) -> Counts:
        counts = Counts()
        # the registry is read once (one listing, one small read per adopted object) instead of once per object
        entries = self.entries_under(prefix)
        keys = self.keys_under(prefix)
        present = set(keys)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="objstore-adopt") as pool:
            outcomes = pool.map(lambda key: self.adopt_one(key, owned, entries.get(key)), keys)
            for key, outcome in zip(keys, outcomes, strict=True):
                if outcome is None:
                    continue
                if outcome.status == SUCCESS:
                    counts.adopted += 1
                elif outcome.status == ALREADY_STORED:
                    counts.already_stored += 1
                else:
                    counts.failed.append({"Key": key, "Error": outcome.error})
        for key in sorted(entries.keys() - present):
            outcome = self.abandon_instance(key)
            if outcome.status == SUCCESS:
                counts.abandoned += 1
            else:
                counts.failed.append({"Key": key, "Error": outcome.error})
        return counts

    def entries_under(self, prefix: str) -> dict[str, dict]:
        """The registry's entries of the objects adopted under ``prefix``, by object key (one listing, one small
        read per adopted object)."""
        return {entry["Key"]: entry for entry in self.registry.entries() if entry["Key"].startswith(prefix)}

    def keys_under(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` that may be adopted (the plugin's bookkeeping left out), in listing order."""
        return [key for key, _ in self.listing.list_sizes(prefix) if not is_internal(key, self.root_path)]

    def adopt_one(self, key: str, owned: bool, entry: dict | None) -> Outcome | None:
        """One object of a prefix (``entry``: its registry entry, None when never adopted); None when skipped
        (the plugin's own non-DICOM objects). Never raises: any failure is the object's ``Failure``."""
        outcome = self._attempt(key, owned, entry, skipped_fails=False)
        if outcome is not None:
            self.on_outcome(_METRIC_OF[outcome.status])
        return outcome

    def _attempt(self, key: str, owned: bool, entry: dict | None, skipped_fails: bool):
        """``_adopt`` that never raises; a skipped object is a ``Failure`` (``skipped_fails``) or None."""
        try:
            outcome = self._adopt(key, owned, entry)
        except Skipped as exc:
            return Outcome(FAILURE, error=str(exc)) if skipped_fails else None
        except OrthancCallError as exc:
            outcome = Outcome(FAILURE, error=f"Orthanc: {exc}")
        except StoreError as exc:
            outcome = Outcome(FAILURE, error=f"the storage: {exc}")
        except Exception as exc:  # noqa: BLE001 - one object's failure never stops the others
            log.exception("adoption of %r failed", key)
            outcome = Outcome(FAILURE, error=f"internal error: {type(exc).__name__}: {exc}")
        return outcome

    # -- helpers

    def _own_dicom_owner(self, key: str) -> Owner | None:
        """The attachment an object of the plugin's own was written for (a DICOM attachment's name); None for a
        foreign name; ``Skipped`` for the plugin's other attachments (header, JSON, unknown types)."""
        name = key[len(self.root_path):] if self.root_path and key.startswith(self.root_path) else key
        match = _OWN_NAME.match(name)
        if match is None:
            return None
        if match.group(2) != ".dcm":
            raise Skipped(f"{key!r} is a {match.group(2)} attachment written by Orthanc's storage, not a DICOM file")
        return Owner(match.group(1), CONTENT_TYPE_DICOM)

    def _exists(self, instance) -> bool:
        return isinstance(instance, str) and bool(instance) and self.api.get_json(f"/instances/{instance}") is not None

    def _removed(self, uuid: str, reference: Reference) -> None:
        try:
            entry = self.registry.get(reference.key)
            if entry is not None and entry.get("Attachment") == uuid:
                self.registry.forget(reference.key)
        except StoreError as exc:
            log.warning("adoption registry: the entry of %r could not be removed (%s)", reference.key, exc)
