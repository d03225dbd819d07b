"""The encryption wrapper on the memory store: rotation, tampering, sizes, unknown keys, the input budget."""

import base64
import os
import struct

import pytest
from support.faulty_store import FaultyStore
from support.official_a1 import DEK, IV, official_a1

from orthanc_objstore.config.sections import MasterKey
from orthanc_objstore.crypto import formats as crypto
from orthanc_objstore.crypto.keys import Keyring
from orthanc_objstore.errors import IntegrityError, NotFound, StoreError, UnknownKeyError
from orthanc_objstore.storage.budget import ByteBudget
from orthanc_objstore.storage.encrypted import EncryptedStore
from orthanc_objstore.storage.protocol import Owner
from orthanc_objstore.storage.providers.memory import MemoryStore

KEY_1 = MasterKey(1, "/keys/one.key", os.urandom(32))
KEY_2 = MasterKey(2, "/keys/two.key", os.urandom(32))
UUID_KEY = "2b2ef2a3-5f8e41ac-9d6a5ee2-1f0f2cd9-bc4f4a0a.dcm.enc"
CHUNK = crypto.A2_CHUNK_SIZE
OWNER = Owner("2b2ef2a3-5f8e41ac-9d6a5ee2-1f0f2cd9-bc4f4a0a", 1)


def encrypted(inner=None, current=KEY_1, previous=(), fmt="A1", max_mb=1024):
    keyring = Keyring(current.id, current.key, [(key.id, key.key) for key in previous])
    return EncryptedStore(inner if inner is not None else MemoryStore(), keyring, fmt, ByteBudget(max_mb * 1024 * 1024))


def assert_no_key_material(message, *keys):
    for key in keys:
        for form in (key.key.hex(), base64.b64encode(key.key).decode(), repr(key.key)):
            assert form not in message


@pytest.mark.parametrize("fmt", crypto.FORMATS)
@pytest.mark.parametrize("size", [0, 1, 50 * 1024 * 1024])
def test_sizes_round_trip(fmt, size):
    inner = MemoryStore()
    store = encrypted(inner, fmt=fmt)
    plaintext = os.urandom(size)
    store.put(UUID_KEY, plaintext, owner=OWNER)
    stored = inner.get(UUID_KEY)
    assert stored[:2] == fmt.encode() and stored[2:6] == b"\x01\x00\x00\x00"
    assert len(plaintext) < 1000 or plaintext[:1000] not in stored
    assert store.get(UUID_KEY, owner=OWNER) == plaintext
    assert store.head(UUID_KEY) == size
    if size:
        assert store.get_range(UUID_KEY, size - 1, 1, owner=OWNER) == plaintext[-1:]
        assert (store.get_range(UUID_KEY, size // 3, size // 2, owner=OWNER)
                == plaintext[size // 3:size // 3 + size // 2])


def test_a_hand_built_official_object_is_read():
    inner = MemoryStore()
    inner.put(UUID_KEY, official_a1(b"written by the official plugin", 1, KEY_1.key, IV, DEK))
    store = encrypted(inner)
    assert store.get(UUID_KEY) == b"written by the official plugin"
    assert store.head(UUID_KEY) == len(b"written by the official plugin")
    assert store.get_range(UUID_KEY, 15, 8) == b"official"


@pytest.mark.parametrize("writer, reader", [("A1", "A2"), ("A2", "A1")])
def test_both_formats_are_always_readable(writer, reader):
    inner = MemoryStore()
    plaintext = os.urandom(3 * CHUNK + 7)
    encrypted(inner, fmt=writer).put(UUID_KEY, plaintext)
    store = encrypted(inner, fmt=reader)
    assert store.get(UUID_KEY) == plaintext
    assert store.head(UUID_KEY) == len(plaintext)
    assert store.get_range(UUID_KEY, CHUNK - 3, CHUNK + 6) == plaintext[CHUNK - 3:2 * CHUNK + 3]


@pytest.mark.parametrize("fmt", crypto.FORMATS)
def test_key_rotation(fmt):
    inner = MemoryStore()
    encrypted(inner, current=KEY_1, fmt=fmt).put("old.dcm.enc", b"old object")
    rotated = encrypted(inner, current=KEY_2, previous=[KEY_1], fmt=fmt)
    rotated.put("new.dcm.enc", b"new object")
    assert inner.get("old.dcm.enc")[2:6] == struct.pack("<I", 1)
    assert inner.get("new.dcm.enc")[2:6] == struct.pack("<I", 2)
    assert rotated.get("old.dcm.enc") == b"old object"
    assert rotated.get("new.dcm.enc") == b"new object"
    assert rotated.get_range("old.dcm.enc", 4, 6) == b"object"

    forgotten = encrypted(inner, current=KEY_2, fmt=fmt)
    with pytest.raises(UnknownKeyError) as caught:
        forgotten.get("old.dcm.enc")
    message = str(caught.value)
    assert "old.dcm.enc" in message and "master key id 1 " in message and "'01000000'" in message
    assert "configured ids: 2" in message and "PreviousMasterKeys" in message
    assert caught.value.key == "old.dcm.enc"
    assert_no_key_material(message, KEY_1, KEY_2)
    with pytest.raises(UnknownKeyError):
        forgotten.get_range("old.dcm.enc", 0, 3)


def test_the_current_key_wins_when_an_id_is_repeated():
    inner = MemoryStore()
    encrypted(inner, current=KEY_1).put(UUID_KEY, b"data")
    impostor = MasterKey(1, "/keys/other.key", os.urandom(32))
    assert encrypted(inner, current=KEY_1, previous=[impostor]).get(UUID_KEY) == b"data"


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]


def a1_tamperings(blob):
    yield "version", flip(blob, 1)
    yield "key id (other configured key)", blob[:2] + struct.pack("<I", 2) + blob[6:]
    yield "key id (unknown)", flip(blob, 4)
    yield "IV start", flip(blob, 6)
    yield "IV end", flip(blob, 37)
    yield "data key start", flip(blob, 38)
    yield "data key end", flip(blob, 69)
    yield "ciphertext start", flip(blob, 70)
    yield "ciphertext middle", flip(blob, len(blob) // 2)
    yield "tag", flip(blob, len(blob) - 1)
    yield "truncated by one byte", blob[:-1]
    yield "truncated to the header", blob[:70]
    yield "truncated to 85 bytes", blob[:85]
    yield "truncated to 5 bytes", blob[:5]
    yield "truncated to 1 byte", blob[:1]
    yield "emptied", b""
    yield "one byte appended", blob + b"\x00"
    yield "a block appended", blob + os.urandom(16)


def a2_tamperings(blob):
    stored = CHUNK + 16
    yield from a1_tamperings(blob)
    yield "chunk size", flip(blob, 6)
    yield "chunk size zero", blob[:6] + bytes(4) + blob[10:]
    yield "plaintext size", flip(blob, 10)
    yield "plaintext size, object cut to match", blob[:10] + struct.pack("<Q", 2 * CHUNK) + blob[18:70 + 2 * stored]
    yield "wrapped key", flip(blob, 18)
    yield "wrapped key end", flip(blob, 57)
    yield "nonce", flip(blob, 58)
    yield "nonce end", flip(blob, 69)
    yield "chunk 1", flip(blob, 70 + stored + 5)
    yield "last chunk dropped", blob[:70 + 2 * stored]
    chunks = [blob[70 + i * stored:70 + (i + 1) * stored] for i in range(3)]
    yield "chunks swapped", blob[:70] + chunks[1] + chunks[0] + chunks[2]
    yield "chunk repeated", blob[:70] + chunks[0] + chunks[0] + chunks[1] + chunks[2]
    yield "a whole chunk appended", blob + chunks[1]


@pytest.mark.parametrize("fmt, tamperings", [("A1", a1_tamperings), ("A2", a2_tamperings)])
def test_every_tampering_is_an_integrity_error_naming_the_object(fmt, tamperings):
    inner = MemoryStore()
    store = encrypted(inner, current=KEY_1, previous=[KEY_2], fmt=fmt)
    plaintext = os.urandom(2 * CHUNK + 100)
    store.put(UUID_KEY, plaintext)
    blob = inner.get(UUID_KEY)
    for name, damaged in tamperings(blob):
        assert damaged != blob, name
        inner.put(UUID_KEY, damaged)
        with pytest.raises(IntegrityError) as caught:
            store.get(UUID_KEY)
        message = str(caught.value)
        assert UUID_KEY in message, (name, message)
        assert caught.value.key == UUID_KEY, name
        assert_no_key_material(message, KEY_1, KEY_2)
        if name.startswith("key id (unknown)"):
            assert isinstance(caught.value, UnknownKeyError), name
        if "appended" in name and fmt == "A2":
            continue  # a range read authenticates what it returns; trailing bytes are a whole-read check
        with pytest.raises(IntegrityError):
            store.get_range(UUID_KEY, 0, len(plaintext))
    inner.put(UUID_KEY, blob)
    assert store.get(UUID_KEY) == plaintext


def test_an_a2_header_spliced_onto_another_body_is_detected():
    inner = MemoryStore()
    store = encrypted(inner, fmt="A2")
    store.put("a", b"x" * 1000)
    store.put("b", b"y" * 1000)
    inner.put("a", inner.get("b")[:70] + inner.get("a")[70:])
    with pytest.raises(IntegrityError, match="chunk 0 of 1 fails authentication"):
        store.get("a")


def test_plain_objects_are_refused_not_returned():
    inner = MemoryStore()
    inner.put(UUID_KEY, b"plain DICOM bytes that were never encrypted" * 3)
    store = encrypted(inner)
    for read in (store.get, store.head, lambda key: store.get_range(key, 0, 4)):
        with pytest.raises(IntegrityError, match="version .* is not supported"):
            read(UUID_KEY)


def test_missing_objects_stay_not_found():
    for fmt in crypto.FORMATS:
        store = encrypted(fmt=fmt)
        for read in (store.get, store.head, lambda key: store.get_range(key, 0, 1)):
            with pytest.raises(NotFound):
                read("missing.dcm.enc")


def test_a2_range_reads_fetch_only_the_needed_chunks():
    inner = FaultyStore()  # no fault: it counts what each read returned
    store = encrypted(inner, fmt="A2")
    plaintext = os.urandom(200 * CHUNK)
    store.put(UUID_KEY, plaintext)
    inner.calls.clear()
    assert store.get_range(UUID_KEY, 100 * CHUNK + 10, 1000) == plaintext[100 * CHUNK + 10:100 * CHUNK + 1010]
    assert inner.reads() == [("get_range", 70), ("get_range", CHUNK + 16)]
    inner.calls.clear()
    assert store.get_range(UUID_KEY, 3 * CHUNK - 1, 2) == plaintext[3 * CHUNK - 1:3 * CHUNK + 1]
    assert inner.reads() == [("get_range", 70), ("get_range", 2 * (CHUNK + 16))]
    inner.calls.clear()
    assert store.head(UUID_KEY) == len(plaintext)
    assert inner.reads() == [("get_range", 70)]


def test_max_concurrent_input_size_refuses_larger_inputs_and_writes_nothing():
    inner = MemoryStore()
    store = encrypted(inner, max_mb=1)
    with pytest.raises(StoreError, match=f"cannot encrypt '{UUID_KEY}'.*too large.*MaxConcurrentInputSize"):
        store.put(UUID_KEY, bytes(1024 * 1024 + 1))
    assert inner.keys() == []
    store.put(UUID_KEY, bytes(1024 * 1024 - 86))
    assert len(store.get(UUID_KEY)) == 1024 * 1024 - 86
    encrypted(inner, max_mb=2).put(UUID_KEY, bytes(1024 * 1024 + 1))
    with pytest.raises(StoreError, match="too large to decrypt"):
        store.get(UUID_KEY)


def test_max_concurrent_input_size_above_4096_mb():
    store = encrypted(max_mb=4096)
    assert store.budget.capacity == 4096 * 1024 * 1024
    store.put(UUID_KEY, b"the official plugin refuses every non-empty file with 4096")
    assert store.get(UUID_KEY).startswith(b"the official plugin")
    assert encrypted(max_mb=10_000).budget.capacity == 10_000 * 1024 * 1024


def test_describe_and_delete_delegate():
    inner = MemoryStore()
    store = encrypted(inner)
    store.put(UUID_KEY, b"data")
    assert store.describe(UUID_KEY) == inner.describe(UUID_KEY)
    store.delete(UUID_KEY)
    assert inner.keys() == []
    assert "key id 1" in repr(store) and "A1" in repr(store)
    assert_no_key_material(repr(store), KEY_1)



@pytest.mark.parametrize("fmt", crypto.FORMATS)
def test_hundreds_of_megabytes_round_trip(fmt):
    inner = MemoryStore()
    store = encrypted(inner, fmt=fmt)
    size = 300 * 1024 * 1024 + 7
    plaintext = os.urandom(size)
    store.put(UUID_KEY, plaintext)
    assert store.head(UUID_KEY) == size
    assert store.get(UUID_KEY) == plaintext
    assert store.get_range(UUID_KEY, size - 100_000, 100_000) == plaintext[-100_000:]


@pytest.mark.parametrize("mode", ["WriteToObjectStorage", "WriteToFileSystem"])
def test_hybrid_mode_encrypts_both_sides(tmp_path, mode):
    from orthanc_objstore import build
    from orthanc_objstore.config import sections as config
    key_path = tmp_path / "master.key"
    key_path.write_bytes(base64.b64encode(KEY_1.key))
    parsed, _ = config.parse({"StorageDirectory": str(tmp_path / "storage"), "AwsS3Storage": {
        "BucketName": "b", "Region": "eu-west-1", "HybridMode": mode, "StorageEncryption": {"MasterKey": [1, str(key_path)]}}})
    objects = MemoryStore()
    area = build.build_area(parsed, store=objects)
    uuid = "8a3e6a47-3c1d-4f1e-9a53-2f8d3c0b7e11"
    area.create(uuid, 1, b"new attachment")
    assert area.read(uuid, 1) == b"new attachment"
    file_path = tmp_path / "storage" / uuid[0:2] / uuid[2:4] / uuid
    written = objects.get(f"{uuid}.dcm.enc") if mode == "WriteToObjectStorage" else file_path.read_bytes()
    assert written[:6] == b"A1\x01\x00\x00\x00"
    assert crypto.decrypt(written, crypto.Keyring(1, KEY_1.key)) == b"new attachment"

    # The other side holds encrypted files too (same format, no .enc on the file system), read as a fallback.
    other = "0c1b2a39-7d4e-4b6f-8e1a-5c3d2b1a0f9e"
    encrypted_blob = crypto.encrypt(b"older attachment", crypto.Keyring(1, KEY_1.key), "A1")
    if mode == "WriteToObjectStorage":
        other_path = tmp_path / "storage" / other[0:2] / other[2:4] / other
        other_path.parent.mkdir(parents=True)
        other_path.write_bytes(encrypted_blob)
    else:
        objects.put(f"{other}.dcm.enc", encrypted_blob)
    assert area.read(other, 1) == b"older attachment"


def encryption_layers(root) -> list[EncryptedStore]:
    """Every EncryptedStore reachable from ``root`` through the attributes of the plugin's objects."""
    found, seen, todo = [], set(), [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or not type(item).__module__.startswith("orthanc_objstore"):
            continue
        seen.add(id(item))
        if isinstance(item, EncryptedStore):
            found.append(item)
        for value in getattr(item, "__dict__", {}).values():
            todo.extend(value if isinstance(value, (list, tuple)) else [value])
    return found


def test_every_encryption_layer_of_orthancs_storage_shares_one_input_budget(tmp_path):
    """MaxConcurrentInputSize bounds the whole plugin: the hybrid sides, the adopted objects' reader and the
    adoption registry hold one budget, not one each."""
    from orthanc_objstore import build
    from orthanc_objstore.config import sections as config
    from orthanc_objstore.storage.cached import ReadCache
    key_path = tmp_path / "master.key"
    key_path.write_bytes(base64.b64encode(KEY_1.key))
    parsed, _ = config.parse({"StorageDirectory": str(tmp_path / "storage"), "AwsS3Storage": {
        "BucketName": "b", "Region": "eu-west-1", "HybridMode": "WriteToObjectStorage",
        "StorageEncryption": {"MasterKey": [1, str(key_path)], "MaxConcurrentInputSize": 64}}})
    storage = build.build_storage(parsed, store=MemoryStore(), cache=ReadCache(1 << 20, 1 << 20),
                                  defer_deletions=True)
    layers = encryption_layers(storage)
    assert len(layers) >= 4  # object storage, file system, the adopted objects' reader (cached and fresh)
    assert {id(layer.budget) for layer in layers} == {id(layers[0].budget)}
    assert layers[0].budget.capacity == 64 * 1024 * 1024
