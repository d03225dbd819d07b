"""Which HTTP requests show that a series or study is about to be read: URI -> prefetch ``Target``.

Orthanc-free and pure: the glue's HTTP request filter calls ``ViewerTriggers.target(method, uri)``
and hands the answer to ``Prefetcher.schedule``. Recognised (GET, and POST for archives):

- DICOMweb (under its ``Root``, ``/dicom-web/`` by default): ``studies/{S}/series/{SE}`` and anything
  below it (metadata, instances, frames, rendered, thumbnail) -> that series; ``studies/{S}/series``
  (the series list a viewer asks for when it opens a study), ``studies/{S}``, ``studies/{S}/metadata``,
  ``studies/{S}/rendered``, ``studies/{S}/thumbnail`` -> that study. QIDO searches (``/studies?...``)
  and instance-level requests outside a series path are not triggers.
- Orthanc's REST API: ``/series/{id}/archive|media|numpy`` and ``/studies/{id}/archive|media`` ->
  that series or study (by Orthanc id).
"""

import re

from ..jobs.prefetch import SERIES, STUDY, Target

_UID = r"([0-9][0-9.]{0,63})"
_ORTHANC_ID = r"([0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8})"
_REST = [
    (re.compile(rf"/series/{_ORTHANC_ID}/(?:archive|media|numpy)"), SERIES),
    (re.compile(rf"/studies/{_ORTHANC_ID}/(?:archive|media)"), STUDY),
]
_READ_METHODS = {"GET", "POST", "1", "2"}  # names, or orthanc.HttpMethod values (GET=1, POST=2)


class ViewerTriggers:
    def __init__(self, dicomweb_root: str = "/dicom-web/"):
        root = "/" + dicomweb_root.strip("/")
        root = "" if root == "/" else re.escape(root)
        self._series = re.compile(rf"{root}/studies/{_UID}/series/{_UID}(?:/.*)?")
        self._study = re.compile(rf"{root}/studies/{_UID}(?:/series|/metadata|/rendered|/thumbnail)?/?")

    def target(self, method, uri: str) -> Target | None:
        """The series or study ``uri`` is about to read, or None."""
        if _method_name(method) not in _READ_METHODS:
            return None
        path = uri.split("?", 1)[0]
        match = self._series.fullmatch(path)
        if match:
            return Target(SERIES, match.group(2), uid=True)
        match = self._study.fullmatch(path)
        if match:
            return Target(STUDY, match.group(1), uid=True)
        for pattern, level in _REST:
            match = pattern.fullmatch(path)
            if match:
                return Target(level, match.group(1))
        return None


def _method_name(method) -> str:
    """'GET' for 'GET', 'get', orthanc.HttpMethod.GET (an int-like 1) or its repr; '' when unknown."""
    if isinstance(method, str):
        return method.upper()
    try:
        return str(int(method))
    except (TypeError, ValueError):
        name = str(method).rsplit(".", 1)[-1].upper()
        return name
