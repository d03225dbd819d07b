"""Orthanc's index read offline: every attachment it records, from its SQLite file or a running Orthanc's REST API.

The offline tools (``tools``) need, for each attachment, the uuid and the content type that give
its object name, and the size and MD5 of the bytes in the storage area (compressed bytes when
``StorageCompression`` was on: the storage holds them as Orthanc wrote them).

* ``read_sqlite_index(path)`` opens Orthanc's default index (``IndexDirectory/index``) read-only. Schema
  (Orthanc's ``PrepareDatabase.sql``, schema version 6, checked on Debian's 1.10.1)::

      Resources(internalId, resourceType 1-4 = Patient/Study/Series/Instance, publicId, parentId)
      AttachedFiles(id -> Resources.internalId, fileType, uuid, compressedSize, uncompressedSize,
                    compressionType 1 = none / 2 = zlib, uncompressedMD5, compressedMD5
                    [, revision, customData: Orthanc >= 1.12.8])

  Orthanc keeps its index in WAL mode: while it runs (or after it was killed) ``index-wal`` exists
  beside ``index``, and the index is refused then (a running Orthanc's index changes under the tools'
  feet; a killed one's needs the log replayed by Orthanc itself). Orthanc must be stopped first.
  The file is opened read-only and ``immutable``: a plain read-only connection to a WAL database
  leaves ``index-wal`` and ``index-shm`` behind, owned by whoever ran the tool, which could stop
  Orthanc (running as another user) from opening its index.
* ``read_rest_index(url, ...)`` asks a running Orthanc (any index back-end: PostgreSQL, MySQL...),
  paging through ``/patients``, ``/studies``, ``/series`` and ``/instances`` and reading each
  resource's ``attachments/<type>/info``.
"""

import base64
import concurrent.futures
import json
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from ..errors import ConfigError
from ..port.index import LEVELS, Attachment, plugin_content_type

RESOURCE_LEVELS = {1: "Patient", 2: "Study", 3: "Series", 4: "Instance"}  # Orthanc's ResourceType
COMPRESSION_NONE, COMPRESSION_ZLIB = 1, 2  # Orthanc's CompressionType
REST_PAGE = 1000


@dataclass(frozen=True)
class IndexEntry:
    """One attachment as Orthanc's index records it."""

    level: str  # Patient, Study, Series, Instance
    resource_id: str  # the resource's public id
    uuid: str
    file_type: int  # the index's own type: 1 DICOM, 2 DICOM-as-JSON, 3 header, 1024+ user-defined...
    size: int  # of the stored (compressed) bytes
    md5: str  # of the stored bytes, hex; "" when StoreMD5ForAttachments was off
    compression: int  # COMPRESSION_NONE or COMPRESSION_ZLIB
    uncompressed_size: int

    @property
    def resource(self) -> str:
        """``instances/<id>``, ``studies/<id>``... as the move job and the REST API name it."""
        return f"{LEVELS[self.level].folder}/{self.resource_id}"

    def attachment(self) -> Attachment:
        """The move job's view: the content type the plugin is handed, the size and MD5 to check."""
        return Attachment(self.resource, self.uuid, plugin_content_type(self.file_type), self.size, self.md5)


def index_path(configuration: dict, base_folder: str) -> str:
    """``IndexDirectory/index`` (IndexDirectory defaults to StorageDirectory), relative paths being relative
    to the configuration's folder as Orthanc interprets them."""
    folder = configuration.get("IndexDirectory", configuration.get("StorageDirectory", "OrthancStorage"))
    return os.path.join(base_folder, folder, "index")


_QUERY = ("SELECT r.resourceType, r.publicId, a.uuid, a.fileType, a.compressedSize, a.compressedMD5, "
          "a.compressionType, a.uncompressedSize FROM AttachedFiles a JOIN Resources r ON r.internalId = a.id "
          "ORDER BY r.resourceType DESC, a.id, a.fileType")


def read_sqlite_index(path: str) -> list[IndexEntry]:
    """Every attachment in Orthanc's SQLite index at ``path``, opened read-only; ``ConfigError`` when it
    cannot be read (missing, in use by a running Orthanc, not an Orthanc index)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no Orthanc SQLite index here (IndexDirectory/index); with another index "
                          "back-end (PostgreSQL...), read it through a running Orthanc with --orthanc URL")
    journals = [path + suffix for suffix in ("-wal", "-journal") if os.path.exists(path + suffix)]
    if journals:
        raise ConfigError(f"{path}: Orthanc is running, or was not stopped cleanly (its journal "
                          f"{os.path.basename(journals[0])} is there); stop Orthanc (start and stop it once "
                          "after a crash), or read the index through the running Orthanc with --orthanc URL")
    try:
        connection = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro&immutable=1", uri=True, timeout=1)
        try:
            rows = connection.execute(_QUERY).fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: cannot read it as Orthanc's SQLite index: {exc}") from None
    return [IndexEntry(RESOURCE_LEVELS.get(kind, "Instance"), public_id, uuid, file_type, int(size), md5 or "",
                       int(compression or COMPRESSION_NONE), int(uncompressed or 0))
            for kind, public_id, uuid, file_type, size, md5, compression, uncompressed in rows]


class OrthancRest:
    """A few GETs against a running Orthanc, with HTTP basic authentication."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None, timeout: float = 60):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--orthanc {url!r}: expected an http:// or https:// URL of Orthanc's REST API")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def get(self, path: str):
        """The JSON answer of ``GET path``; None on 404 (a resource deleted meanwhile)."""
        request = urllib.request.Request(self.url + path, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code in (401, 403):
                raise ConfigError(f"{self.url}: HTTP {exc.code}, the credentials were refused (--user, "
                                  "--password or ORTHANC_USER / ORTHANC_PASSWORD)") from None
            raise ConfigError(f"{self.url}{path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConfigError(f"{self.url}: cannot reach Orthanc ({getattr(exc, 'reason', exc)})") from None


def read_rest_index(url: str, user: str | None = None, password: str | None = None,
                    workers: int = 8) -> list[IndexEntry]:
    """Every attachment of every resource (patients, studies, series, instances) of a running Orthanc."""
    rest = OrthancRest(url, user, password)
    resources = [(level, resource_id) for level in ("Instance", "Series", "Study", "Patient")
                 for resource_id in _all_ids(rest, LEVELS[level].folder)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        found = pool.map(lambda resource: _attachments(rest, *resource), resources)
        return [entry for entries in found for entry in entries]


def _all_ids(rest: OrthancRest, folder: str) -> list[str]:
    ids: list[str] = []
    since = 0
    while True:
        page = rest.get(f"/{folder}?since={since}&limit={REST_PAGE}") or []
        ids += page
        if len(page) < REST_PAGE:
            return list(dict.fromkeys(ids))
        since += len(page)


def _attachments(rest: OrthancRest, level: str, resource_id: str) -> list[IndexEntry]:
    folder = f"/{LEVELS[level].folder}/{resource_id}"
    entries = []
    for file_type in sorted((rest.get(f"{folder}/attachments?full") or {}).values()):
        info = rest.get(f"{folder}/attachments/{file_type}/info")
        if info is None:
            continue  # deleted meanwhile
        size, uncompressed = int(info["CompressedSize"]), int(info["UncompressedSize"])
        md5 = info.get("CompressedMD5", "")
        same = size == uncompressed and md5 == info.get("UncompressedMD5", "")
        entries.append(IndexEntry(level, resource_id, info["Uuid"], int(file_type), size, md5,
                                  COMPRESSION_NONE if same else COMPRESSION_ZLIB, uncompressed))
    return entries
