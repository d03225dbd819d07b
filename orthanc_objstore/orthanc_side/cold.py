"""Reads refused for a cold storage class: what happens besides the error (``RestoreOnRead``).

A read of an object in S3 GLACIER / DEEP_ARCHIVE or Azure Archive that was not restored fails with
``NeedsRestore`` (the metered area counts it as an error of kind ``needs_restore``). With
``RestoreOnRead: true`` the first such read of an attachment also asks for its restore, with the
configured ``RestoreDays`` and ``RestoreTier``; later reads while it runs ask nothing more (the store
says the restore is in progress). Off by default: restores cost money.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..areas.contract import Area
from ..errors import NeedsRestore
from ..jobs.restore import FAILED, REQUESTED

log = logging.getLogger("orthanc_objstore")


@dataclass(frozen=True)
class RestorePolicy:
    """The RestoreOnRead, RestoreDays and RestoreTier options."""

    restore_on_read: bool = False
    days: int = 7
    tier: str = "Standard"


class ColdReads:
    """Called by the read callbacks with each ``NeedsRestore``; returns what to add to the failure's message."""

    def __init__(self, area: Area, policy: RestorePolicy, on_step: Callable[[str], None] | None = None):
        self.area = area
        self.policy = policy
        self.on_step = on_step or (lambda outcome: None)

    def refused(self, uuid: str, content_type: int, exc: NeedsRestore) -> str:
        if not self.policy.restore_on_read or exc.restoring:
            return ""
        try:
            state = self.area.restore(uuid, content_type, self.policy.days, self.policy.tier)
        except Exception as error:  # noqa: BLE001 - the read fails anyway; say why no restore started
            self.on_step(FAILED)
            return f"; RestoreOnRead could not ask for its restore: {error}"
        self.on_step(REQUESTED)
        log.warning("RestoreOnRead: asked for the restore of attachment %s (%s, tier %s, %d days); state now %s",
                    uuid, state.storage_class, self.policy.tier, self.policy.days, state.restore)
        return (f"; RestoreOnRead asked for its restore (tier {self.policy.tier}, {self.policy.days} days): "
                "read it again once the restore is done")
