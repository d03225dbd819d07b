"""The store conformance suite: the protocol's contract as checks every store and wrapper must pass.

Each ``check_*`` function takes a store (empty or not: keys are unique per call) and raises
``AssertionError`` on a violation. ``CHECKS`` lists them all; ``tests/unit/test_conformance.py``
runs every check against the memory and file-system stores and the encryption wrapper over them, and
``tests/providers/test_cloud_conformance.py`` against every provider (moto, Azurite, fake-gcs-server) and
the encryption wrapper over each, so that no store gets a hand-picked subset. The owner checks follow
what the store declares (``store.owner_checks``). ``BUCKET_CHECKS`` take instead a store over a
bucket/container that does not exist; every store with a bucket (the providers, and wrappers around
them) runs them.
"""

import concurrent.futures
import os
import uuid as uuidlib

from ..errors import BucketNotFound, IntegrityError, NotFound
from ..storage.protocol import PROTOCOL_METHODS, Owner, StartupCheck, exists, owner_checks

LARGE_SIZE = 50 * 1024 * 1024


def _key(prefix="conformance"):
    return f"{prefix}/{uuidlib.uuid4()}.dcm"


def check_implements_protocol(store):
    for name in PROTOCOL_METHODS:
        assert callable(getattr(store, name, None)), f"{type(store).__name__} lacks {name}()"


def check_put_get_round_trip(store):
    key, data = _key(), os.urandom(100_000)
    store.put(key, data)
    assert store.get(key) == data
    assert store.head(key) == len(data)


def check_empty_object(store):
    key = _key()
    store.put(key, b"")
    assert store.get(key) == b""
    assert store.head(key) == 0
    assert store.get_range(key, 0, 0) == b""


def check_one_byte_object(store):
    key = _key()
    store.put(key, b"\x00")
    assert store.get(key) == b"\x00"
    assert store.get_range(key, 0, 1) == b"\x00"


def check_overwrite_replaces(store):
    key = _key()
    store.put(key, b"first version")
    store.put(key, b"second")
    assert store.get(key) == b"second"


def check_range_reads(store):
    key, data = _key(), os.urandom(10_000)
    store.put(key, data)
    assert store.get_range(key, 0, 10) == data[:10]
    assert store.get_range(key, 1234, 100) == data[1234:1334]
    assert store.get_range(key, 9_990, 10) == data[-10:]
    assert store.get_range(key, 0, len(data)) == data


def check_range_past_end_is_an_error(store):
    key = _key()
    store.put(key, b"0123456789")
    for start, length in ((5, 10), (10, 1), (100, 5)):
        try:
            result = store.get_range(key, start, length)
        except IntegrityError:
            continue
        raise AssertionError(f"get_range({start}, {length}) on 10 bytes returned {len(result)} bytes")


def check_missing_object_is_not_found(store):
    key = _key("missing")
    for operation in (lambda: store.get(key), lambda: store.head(key), lambda: store.get_range(key, 0, 1)):
        try:
            operation()
        except NotFound as exc:
            assert isinstance(exc, FileNotFoundError)
            continue
        raise AssertionError("reading a missing object did not raise NotFound")
    assert not exists(store, key)


def check_delete(store):
    key = _key()
    store.put(key, b"to be deleted")
    assert exists(store, key)
    store.delete(key)
    assert not exists(store, key)
    store.delete(key)  # idempotent


def check_keys_are_distinct(store):
    base = _key()
    keys = [base, base + ".enc", base.replace(".dcm", ".dcm.head"), base.replace(".dcm", ".unk")]
    for index, key in enumerate(keys):
        store.put(key, f"object {index}".encode())
    for index, key in enumerate(keys):
        assert store.get(key) == f"object {index}".encode()
    store.delete(keys[0])
    assert store.get(keys[1]) == b"object 1"


def check_nested_key(store):
    key = f"root/sub/{uuidlib.uuid4().hex[:2]}/{uuidlib.uuid4()}"
    store.put(key, b"nested")
    assert store.get(key) == b"nested"
    store.delete(key)
    assert not exists(store, key)


def check_describe_names_the_key(store):
    key = _key()
    assert key in store.describe(key)


def check_concurrent_use(store):
    items = {_key("concurrent"): os.urandom(50_000 + i) for i in range(32)}

    def round_trip(item):
        key, data = item
        store.put(key, data)
        assert store.get(key) == data
        assert store.get_range(key, 100, 1000) == data[100:1100]
        store.delete(key)
        return key

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        done = list(pool.map(round_trip, items.items()))
    assert sorted(done) == sorted(items)
    assert not any(exists(store, key) for key in items)


def check_large_object(store):
    key, data = _key("large"), os.urandom(LARGE_SIZE)
    store.put(key, data)
    try:
        assert store.head(key) == LARGE_SIZE
        assert store.get(key) == data
        assert store.get_range(key, LARGE_SIZE - 4096, 4096) == data[-4096:]
    finally:
        store.delete(key)


def _owner(content_type=1):
    return Owner(str(uuidlib.uuid4()), content_type)


def check_owner_reads_its_own_object(store):
    key, data, owner = _key(), os.urandom(70_000), _owner()
    store.put(key, data, owner=owner)
    assert store.get(key, owner=owner) == data
    assert store.get_range(key, 65_000, 5_000, owner=owner) == data[65_000:]
    assert store.head(key) == len(data)


def check_another_owner_is_refused(store):
    """An object written for attachment A and read as attachment B (another uuid, or the same uuid with
    another content type) fails with IntegrityError on every store that records or binds the owner; the
    error names both attachments when the store records them. A store doing neither returns the data."""
    key, data, written_for = _key(), os.urandom(70_000), _owner()
    store.put(key, data, owner=written_for)
    records, binds = owner_checks(store)
    for read_as in (_owner(), Owner(written_for.uuid, 3)):
        reads = {"get": (lambda owner=read_as: store.get(key, owner=owner), data),
                 "get_range": (lambda owner=read_as: store.get_range(key, 10, 100, owner=owner), data[10:110]),
                 "far get_range": (lambda owner=read_as: store.get_range(key, 66_000, 4_000, owner=owner),
                                   data[66_000:])}
        for name, (read, unchecked) in reads.items():
            if not records and not binds:
                assert read() == unchecked, f"{name} on a store without owner checks"
                continue
            try:
                result = read()
            except IntegrityError as exc:
                if records:
                    assert written_for.uuid in str(exc) and read_as.uuid in str(exc), f"{name}: {exc}"
                    assert f"type {read_as.content_type}" in str(exc), f"{name}: {exc}"
                assert exc.key == key, f"{name}: {exc.key!r}"
                continue
            raise AssertionError(f"{name} as {read_as} of an object written for {written_for} returned "
                                 f"{len(result)} bytes")


def check_object_without_owner_reads_as_before(store):
    """An object written without an owner (by the official plugin, or before owners were recorded) reads
    under any owner."""
    key, data = _key(), os.urandom(70_000)
    store.put(key, data)
    owner = _owner()
    assert store.get(key, owner=owner) == data
    assert store.get_range(key, 65_000, 5_000, owner=owner) == data[65_000:]


def check_missing_bucket_is_not_not_found(store):
    """Every operation on a missing bucket raises BucketNotFound: a NotFound would send hybrid mode and the
    move job to "the file is elsewhere", and a delete that returned would hide the missing bucket."""
    key = _key("no-bucket")
    operations = {"put": lambda: store.put(key, b"x"), "get": lambda: store.get(key),
                  "get_range": lambda: store.get_range(key, 0, 1),
                  "empty get_range": lambda: store.get_range(key, 0, 0),
                  "head": lambda: store.head(key), "delete": lambda: store.delete(key)}
    if isinstance(store, StartupCheck):
        operations["check_bucket"] = store.check_bucket
    for name, operation in operations.items():
        try:
            operation()
        except BucketNotFound:
            continue
        except NotFound as exc:
            raise AssertionError(f"{name} on a missing bucket raised NotFound ({exc})") from exc
        raise AssertionError(f"{name} on a missing bucket did not fail")


BUCKET_CHECKS = [check_missing_bucket_is_not_not_found]
CHECKS = [value for name, value in sorted(globals().items())
          if name.startswith("check_") and value not in BUCKET_CHECKS]
