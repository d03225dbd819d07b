"""Large objects without whole copies: buffers handed to every provider as they are, encrypted round trips."""

import io
import os
import uuid

import pytest

from orthanc_objstore.config.sections import MasterKey
from orthanc_objstore.crypto import formats as crypto
from orthanc_objstore.crypto.keys import Keyring
from orthanc_objstore.storage.budget import ByteBudget
from orthanc_objstore.storage.buffers import BufferReader
from orthanc_objstore.storage.encrypted import EncryptedStore

SIZE = 9 * 1024 * 1024 + 123  # above the Azure block and GCS multipart thresholds (8 MiB)


def test_buffer_reader_reads_seeks_and_refuses_bad_whence():
    data = bytearray(b"0123456789")
    reader = BufferReader(data)
    assert len(reader) == 10 and reader.read(3) == b"012" and reader.tell() == 3
    target = bytearray(4)
    assert reader.readinto(target) == 4 and target == b"3456"
    assert reader.seek(-2, io.SEEK_END) == 8 and reader.read() == b"89" and reader.read(5) == b""
    assert reader.seek(0) == 0 and reader.read(-1) == bytes(data)
    with pytest.raises(ValueError, match="whence"):
        reader.seek(0, 7)
    with pytest.raises(ValueError, match="negative"):
        reader.seek(-1)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read()


def test_every_provider_stores_a_bytearray_as_it_is(backend):
    store = backend.store()
    data = bytearray(os.urandom(SIZE))
    key = f"large/{uuid.uuid4()}"
    store.put(key, data)
    assert backend.read(key) == data
    assert store.get(key) == data


@pytest.mark.parametrize("fmt", ["A1", "A2"])
def test_encrypted_large_object_round_trip_on_every_provider(backend, fmt):
    key_config = MasterKey(1, "/keys/large.key", os.urandom(32))
    store = EncryptedStore(backend.store(), Keyring(key_config.id, key_config.key), fmt)
    data = os.urandom(SIZE)
    key = f"large/{uuid.uuid4()}.enc"
    store.put(key, data)
    stored = backend.read(key)
    assert stored[:2] == fmt.encode() and len(stored) > len(data)
    assert crypto.decrypt(stored, crypto.Keyring(1, key_config.key)) == data
    read = store.get(key)
    assert type(read) is bytes and read == data  # Orthanc's read callback takes bytes only
    assert store.get_range(key, SIZE - 70_000, 70_000) == data[-70_000:]


def test_a_file_larger_than_max_concurrent_input_size_still_fails_clearly():
    from orthanc_objstore.errors import StoreError
    from orthanc_objstore.storage.providers.memory import MemoryStore
    store = EncryptedStore(MemoryStore(), Keyring(1, os.urandom(32)), "A1", ByteBudget(1024 * 1024))
    with pytest.raises(StoreError, match="more than MaxConcurrentInputSize"):
        store.put("big", bytes(1024 * 1024 + 1))
