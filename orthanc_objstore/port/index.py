"""Orthanc's index as the plugin sees it: the ``OrthancApi`` port, resource levels, and the index queries.

**The port.** Every access of the plugin to Orthanc's REST API and index goes through one
``OrthancApi``. Its contract is the rule that keeps Orthanc from freezing (SPEC Q-5): *no call
waits on Orthanc's index while it holds the GIL*. Orthanc calls the storage callbacks while it holds
its own index lock, and those callbacks need the GIL; a Python thread that held the GIL while it
waited for that lock would deadlock Orthanc for good. Python plugin 4.0 keeps the GIL during every
``orthanc.*`` call, so the port's usual implementation (``loopback.LoopbackApi``) speaks to Orthanc's
own HTTP server on 127.0.0.1, where waiting is socket I/O and releases the GIL. The glue uses the
SDK's in-process calls instead only where the Python plugin releases the GIL during them
(``"Python": {"AllowThreads": true}``, plugin 7.1 and newer).

Implementations raise ``OrthancCallError`` (with the HTTP status Orthanc answered, or 503 when it
could not be reached or was too busy) and never block without a bound.
"""

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class OrthancCallError(Exception):
    """A call to Orthanc's REST API failed: ``status`` is Orthanc's HTTP status (503: not reachable, busy)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class OrthancApi(Protocol):
    def get_json(self, uri: str) -> Any:
        """The JSON answer of ``GET uri``; None when Orthanc answers 404 (unknown resource)."""

    def post_json(self, uri: str, body: bytes | str) -> Any:
        """The JSON answer of ``POST uri``; raises ``OrthancCallError`` on any error status."""

    def get_bytes(self, uri: str) -> bytes:
        """The raw answer of ``GET uri`` (e.g. an archive); raises ``OrthancCallError`` on any error status."""

    def delete(self, uri: str) -> None:
        """``DELETE uri``; a 404 (already gone) is not an error; raises ``OrthancCallError`` on any other error."""

    def handler_slot(self) -> AbstractContextManager[None]:
        """Held by a REST handler while it uses the port; raises ``OrthancCallError(503)`` at once when
        too many handlers already do (each one holds one of Orthanc's HTTP threads)."""


@dataclass(frozen=True)
class Level:
    """One resource level of Orthanc's index."""

    name: str          # "Patient"
    group: str         # "Patients": its key in a job's content
    folder: str        # "patients": its REST folder
    child: str | None  # the level below, None for instances


LEVELS = {level.name: level for level in (
    Level("Patient", "Patients", "patients", "Study"),
    Level("Study", "Studies", "studies", "Series"),
    Level("Series", "Series", "series", "Instance"),
    Level("Instance", "Instances", "instances", None),
)}
LEVEL_BY_FOLDER = {level.folder: level for level in LEVELS.values()}
LEVEL_BY_GROUP = {level.group: level for level in LEVELS.values()}
RESOLUTION_ORDER = ("Instance", "Series", "Study", "Patient")  # as the official plugin
_RESOURCE_ID = re.compile(r"^[0-9a-fA-F-]{1,100}$")


def valid_resource_id(resource_id: str) -> bool:
    """Whether ``resource_id`` has the shape of an Orthanc id (never sent to Orthanc otherwise)."""
    return bool(_RESOURCE_ID.match(resource_id))


def plugin_content_type(index_content_type: int) -> int:
    """The content type Orthanc hands the storage callbacks for an attachment type of its index.

    Orthanc passes DICOM (1), DICOM-as-JSON (2) and DICOM-until-pixel-data (3) as they are and every
    other type, user-defined ones included, as 0 (unknown).
    """
    return index_content_type if index_content_type in (1, 2, 3) else 0


@dataclass(frozen=True)
class Attachment:
    """One attachment as Orthanc's index records it (size and MD5 of the bytes in the storage)."""

    resource: str  # "instances/<id>", "studies/<id>"...
    uuid: str
    content_type: int
    size: int
    md5: str  # hex; "" when Orthanc does not store MD5s (StoreMD5ForAttachments false)


class OrthancIndex(Protocol):
    """What moves and "where is my file" need from Orthanc's index."""

    def level_of(self, resource_id: str) -> str | None:
        """``Patient``, ``Study``, ``Series``, ``Instance``, or None for an unknown id."""

    def exists(self, level: str, resource_id: str) -> bool:
        """Whether the resource is in the index at that level."""

    def children(self, level: str, resource_id: str) -> list[str]:
        """The ids one level below (studies of a patient...); [] for an instance or a deleted resource."""

    def attachments(self, level: str, resource_id: str) -> list[Attachment]:
        """The attachments of the resource itself; [] when it was deleted."""


class RestIndex:
    """``OrthancIndex`` through the port (Orthanc's REST API)."""

    def __init__(self, api: OrthancApi):
        self.api = api

    def level_of(self, resource_id: str) -> str | None:
        if not valid_resource_id(resource_id):
            return None
        for name in RESOLUTION_ORDER:
            if self.exists(name, resource_id):
                return name
        return None

    def exists(self, level: str, resource_id: str) -> bool:
        if not valid_resource_id(resource_id):
            return False
        return self.api.get_json(f"/{LEVELS[level].folder}/{resource_id}") is not None

    def children(self, level: str, resource_id: str) -> list[str]:
        this = LEVELS[level]
        if this.child is None:
            return []
        resource = self.api.get_json(f"/{this.folder}/{resource_id}") or {}
        return list(resource.get(LEVELS[this.child].group, []))

    def attachments(self, level: str, resource_id: str) -> list[Attachment]:
        resource = f"{LEVELS[level].folder}/{resource_id}"
        found = []
        kinds = self.api.get_json(f"/{resource}/attachments?full") or {}
        for kind in sorted(kinds.values()):
            info = self.api.get_json(f"/{resource}/attachments/{kind}/info")
            if info is None:
                continue  # removed meanwhile
            found.append(Attachment(resource, info["Uuid"], plugin_content_type(kind), int(info["CompressedSize"]),
                                    info.get("CompressedMD5", "")))
        return found
