"""``GET /objstore/status``: what the plugin is doing in the background (deferred deletions, orphans), as JSON.

Orthanc-free and answered from memory (no call to Orthanc, no request to the store), so it answers while
the store is down. No secret and no key is in the answer.
"""

from .rest import Request, answer_json

ROUTE = "/objstore/status"


class StatusRoute:
    """The handler of ``ROUTE``: ``deletions`` is a ``DeferredDeletions`` or None (``DelayedDeletion`` false),
    ``orphans`` returns how many orphans of failed uploads wait for clean-up."""

    def __init__(self, deletions, orphans):
        self.deletions = deletions
        self.orphans = orphans

    def __call__(self, output, request: Request) -> None:
        deletions = self.deletions.status() if self.deletions is not None else {"Enabled": False}
        answer_json(output, {"DelayedDeletion": deletions, "OrphansPending": self.orphans()})
