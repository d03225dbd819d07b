"""Object names: (attachment uuid, content type, options) → key, byte-identical to the official plugins.

Pure functions, no I/O. The rules (SPEC NAME-1..4, official ``BaseStorage::GetPath``):

``flat`` (default)
    ``RootPath/<uuid><ext>`` with ext ``.dcm`` (type 1 DICOM), ``.json`` (2 DICOM-as-JSON),
    ``.dcm.head`` (3 DICOM until pixel data) and ``.unk`` (0 and every other type, including
    user-defined attachments, which Orthanc hands to plugins as 0); ``.enc`` is appended when
    encryption is on. An empty RootPath gives the bare file name; a separator is added only when
    RootPath does not already end with '/'.

``legacy``
    ``RootPath/<uuid[0:2]>/<uuid[2:4]>/<uuid>``: Orthanc's own StorageDirectory layout, with no
    extension and no ``.enc`` whatever the type or encryption. The file-system side of hybrid
    mode uses this layout with an empty root.

``EnableLegacyUnknownFiles``
    Header attachments (type 3) written by plugin 1.2.0 with Orthanc 1.9.3 are named
    ``<uuid>.unk[.enc]``; with the option on, ``candidate_keys`` lists that name second so reads
    and deletes also try it.

Uuids are checked against Orthanc's format (36 characters of hex digits and dashes), so that no
key can escape its RootPath or StorageDirectory.
"""

import re
from dataclasses import dataclass

FLAT = "flat"
LEGACY = "legacy"
STRUCTURES = (FLAT, LEGACY)

CONTENT_TYPE_UNKNOWN = 0
CONTENT_TYPE_DICOM = 1
CONTENT_TYPE_DICOM_AS_JSON = 2
CONTENT_TYPE_DICOM_UNTIL_PIXEL_DATA = 3

_EXTENSIONS = {
    CONTENT_TYPE_DICOM: ".dcm",
    CONTENT_TYPE_DICOM_AS_JSON: ".json",
    CONTENT_TYPE_DICOM_UNTIL_PIXEL_DATA: ".dcm.head",
}
_UNKNOWN_EXTENSION = ".unk"
_ENCRYPTED_SUFFIX = ".enc"
_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


@dataclass(frozen=True)
class Naming:
    """How one storage names its objects: the options of SPEC NAME gathered in one value."""

    structure: str = FLAT
    root_path: str = ""
    encrypted: bool = False
    legacy_unknown_files: bool = False

    def key(self, uuid: str, content_type: int) -> str:
        """The key under which a new attachment is written."""
        return object_key(uuid, content_type, structure=self.structure, root_path=self.root_path,
                          encrypted=self.encrypted)

    def candidate_keys(self, uuid: str, content_type: int) -> list[str]:
        """Keys to try, in order, when reading or deleting: the primary name, then legacy ones."""
        return candidate_keys(uuid, content_type, structure=self.structure, root_path=self.root_path,
                              encrypted=self.encrypted, legacy_unknown_files=self.legacy_unknown_files)


def validate_uuid(uuid: str) -> str:
    """Returns ``uuid`` if it has Orthanc's format, else raises ``ValueError`` (no path tricks)."""
    if not isinstance(uuid, str) or not _UUID.match(uuid):
        raise ValueError(f"invalid attachment uuid {uuid!r}: expected 36 hex digits and dashes")
    return uuid


def object_key(uuid: str, content_type: int, *, structure: str = FLAT, root_path: str = "",
               encrypted: bool = False, alternate_extension: bool = False) -> str:
    """The official plugin's name for an attachment (``BaseStorage::GetPath``).

    ``alternate_extension`` selects the ``.unk`` name of header attachments (legacy unknown files).
    """
    validate_uuid(uuid)
    if structure == LEGACY:
        name = f"{uuid[0:2]}/{uuid[2:4]}/{uuid}"
    elif structure == FLAT:
        if alternate_extension and content_type == CONTENT_TYPE_DICOM_UNTIL_PIXEL_DATA:
            extension = _UNKNOWN_EXTENSION
        else:
            extension = _EXTENSIONS.get(content_type, _UNKNOWN_EXTENSION)
        name = uuid + extension + (_ENCRYPTED_SUFFIX if encrypted else "")
    else:
        raise ValueError(f"unknown StorageStructure {structure!r}: allowed are {', '.join(STRUCTURES)}")
    if not root_path:
        return name
    return root_path + name if root_path.endswith("/") else f"{root_path}/{name}"


def candidate_keys(uuid: str, content_type: int, *, structure: str = FLAT, root_path: str = "",
                   encrypted: bool = False, legacy_unknown_files: bool = False) -> list[str]:
    """Keys to try when reading or deleting, primary first, without duplicates."""
    keys = [object_key(uuid, content_type, structure=structure, root_path=root_path, encrypted=encrypted)]
    if legacy_unknown_files:
        alternate = object_key(uuid, content_type, structure=structure, root_path=root_path,
                               encrypted=encrypted, alternate_extension=True)
        if alternate not in keys:
            keys.append(alternate)
    return keys
