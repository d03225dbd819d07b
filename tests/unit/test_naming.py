"""Object names, table-driven against the names the official plugin gives (BaseStorage::GetPath)."""

import pytest

from orthanc_objstore.areas.naming import Naming, candidate_keys, object_key, validate_uuid

U = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"

# (content type, structure, root path, encrypted) -> the official plugin's name
OFFICIAL = [
    (1, "flat", "", False, f"{U}.dcm"),
    (2, "flat", "", False, f"{U}.json"),
    (3, "flat", "", False, f"{U}.dcm.head"),
    (0, "flat", "", False, f"{U}.unk"),
    (1025, "flat", "", False, f"{U}.unk"),
    (1, "flat", "", True, f"{U}.dcm.enc"),
    (3, "flat", "", True, f"{U}.dcm.head.enc"),
    (0, "flat", "", True, f"{U}.unk.enc"),
    (1, "flat", "my/folder", False, f"my/folder/{U}.dcm"),
    (1, "flat", "my/folder/", False, f"my/folder/{U}.dcm"),
    (2, "flat", "root", True, f"root/{U}.json.enc"),
    (1, "legacy", "", False, f"0a/1b/{U}"),
    (3, "legacy", "", True, f"0a/1b/{U}"),
    (0, "legacy", "prefix", False, f"prefix/0a/1b/{U}"),
    (1, "legacy", "prefix/", True, f"prefix/0a/1b/{U}"),
]


@pytest.mark.parametrize("content_type,structure,root,encrypted,expected", OFFICIAL)
def test_official_names(content_type, structure, root, encrypted, expected):
    assert object_key(U, content_type, structure=structure, root_path=root, encrypted=encrypted) == expected
    naming = Naming(structure=structure, root_path=root, encrypted=encrypted)
    assert naming.key(U, content_type) == expected
    assert naming.candidate_keys(U, content_type) == [expected]


@pytest.mark.parametrize("content_type,encrypted,expected", [
    (3, False, [f"{U}.dcm.head", f"{U}.unk"]),
    (3, True, [f"{U}.dcm.head.enc", f"{U}.unk.enc"]),
    (1, False, [f"{U}.dcm"]),
    (0, False, [f"{U}.unk"]),
])
def test_legacy_unknown_files(content_type, encrypted, expected):
    assert candidate_keys(U, content_type, encrypted=encrypted, legacy_unknown_files=True) == expected


def test_legacy_unknown_files_in_legacy_layout_adds_nothing():
    assert candidate_keys(U, 3, structure="legacy", legacy_unknown_files=True) == [f"0a/1b/{U}"]


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", U[:-1], U + "0", "0a1b2c3d/4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                                 "..1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", None])
def test_invalid_uuids_are_refused(bad):
    with pytest.raises(ValueError, match="invalid attachment uuid"):
        validate_uuid(bad)
    with pytest.raises(ValueError):
        object_key(bad, 1)


def test_unknown_structure_is_refused():
    with pytest.raises(ValueError, match="flat, legacy"):
        object_key(U, 1, structure="tree")
