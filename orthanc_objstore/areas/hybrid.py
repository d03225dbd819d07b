"""Hybrid mode: one area made of a primary and a secondary area (object storage and file system).

Contract (SPEC HYB-2), the ``Area`` protocol's, plus:

* ``create`` writes to the primary only and returns the primary's ``Location``;
* ``read`` / ``read_range`` try the primary, then the secondary, and fall back **only** on
  ``NotFound``: any other error of the primary (unreachable store, damaged or undecryptable object)
  surfaces as it is, so that a failing store is never mistaken for a missing file. When the
  secondary says ``NotFound`` too, the primary is asked once more: a move job writes the target
  before it deletes the source, so a reader racing with a move always finds the file on that
  second look;
* ``remove`` removes the attachment from both sides (missing on one side is normal);
* ``locate`` lists where the attachment is on both sides;
* ``cold_state`` / ``restore`` ask the side a read would get the file from (primary, then secondary).

A ``location`` hint is passed on, as it is, to both sides: each side uses it only when it names that
side's storage (``ObjectArea``), so a hint naming the other side or another storage costs nothing.
The hint does not choose which side is asked first. A move job does not update the custom data
Orthanc keeps, so after a move the hint names the side the file left; asking that side first would
cost every read of a moved file one miss, and would make it fail while that side is down (for
example an S3 bucket being retired after everything was moved to the file system), although the
side that has the file answers.

A file missing on one side is the normal state of hybrid mode and logs nothing above debug level.
Encryption, when enabled, wraps each side's store (``build.file_system_area`` and the object area
are built that way), as the official plugin does. ``build.build_hybrid_area`` makes one from a
``HybridMode``.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from ..errors import NotFound
from ..storage.protocol import ColdState
from .contract import FILE_SYSTEM, OBJECT_STORAGE, Area, Location

log = logging.getLogger(__name__)

T = TypeVar("T")


class HybridArea:
    """Writes to ``primary``; reads from ``primary`` then ``secondary``; removes from both."""

    def __init__(self, primary: Area, secondary: Area, *, file_system: Area, object_storage: Area,
                 on_fallback=None):
        self.on_fallback = on_fallback or (lambda: None)  # metrics: a read served by the secondary
        self.primary = primary
        self.secondary = secondary
        self.sides = {FILE_SYSTEM: file_system, OBJECT_STORAGE: object_storage}

    def __repr__(self) -> str:
        return f"HybridArea(primary={self.primary!r}, secondary={self.secondary!r})"

    def side(self, name: str) -> Area:
        """The area of one storage, by its name in ``/move-storage`` (``file-system``, ``object-storage``)."""
        return self.sides[name]

    def create(self, uuid: str, content_type: int, data: bytes) -> Location:
        return self.primary.create(uuid, content_type, data)

    def read(self, uuid: str, content_type: int, location: Location | None = None) -> bytes:
        return self._with_fallback(uuid, lambda area: area.read(uuid, content_type, location=location))

    def read_range(self, uuid: str, content_type: int, start: int, length: int,
                   location: Location | None = None) -> bytes:
        return self._with_fallback(uuid, lambda area: area.read_range(uuid, content_type, start, length,
                                                                        location=location))

    def remove(self, uuid: str, content_type: int, location: Location | None = None) -> None:
        first_error: Exception | None = None
        for area in (self.primary, self.secondary):
            try:
                area.remove(uuid, content_type, location=location)
            except NotFound:
                pass
            except Exception as exc:  # noqa: BLE001 - still remove the other side, then report
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def locate(self, uuid: str, content_type: int) -> list[Location]:
        return self.primary.locate(uuid, content_type) + self.secondary.locate(uuid, content_type)

    @property
    def restore_tiers(self) -> tuple[str, ...]:
        return self.sides[OBJECT_STORAGE].restore_tiers

    def cold_state(self, uuid: str, content_type: int) -> ColdState:
        return self._with_fallback(uuid, lambda area: area.cold_state(uuid, content_type), read=False)

    def restore(self, uuid: str, content_type: int, days: int, tier: str) -> ColdState:
        return self._with_fallback(uuid, lambda area: area.restore(uuid, content_type, days, tier),
                                   read=False)

    def _with_fallback(self, uuid: str, operation: Callable[[Area], T], read: bool = True) -> T:
        try:
            return operation(self.primary)
        except NotFound:
            log.debug("attachment %s is not in the primary storage, trying the secondary", uuid)
        try:
            data = operation(self.secondary)
            if read:
                self.on_fallback()
            return data
        except NotFound as missing:
            log.debug("attachment %s is in neither storage, asking the primary once more", uuid)
            try:
                return operation(self.primary)
            except NotFound:
                raise missing from None
