"""The rows of the conformance matrices: how to make each store under test (tests/unit and tests/providers).

A row is a function ``(request, tmp_path) -> store``; ``encrypted(row, fmt)`` is the same store behind the
encryption wrapper. ``matrix(rows)`` is every row plain and behind every format of ENCRYPTION_FORMATS, so
that no format is run on a hand-picked subset of the stores.
"""

import os

from orthanc_objstore.config.sections import MasterKey
from orthanc_objstore.crypto.formats import FORMATS as ENCRYPTION_FORMATS
from orthanc_objstore.crypto.keys import Keyring
from orthanc_objstore.storage.cached import CachedStore, ReadCache
from orthanc_objstore.storage.encrypted import EncryptedStore


def encrypted(inner, encryption_format):
    def make(request, tmp_path):
        key = MasterKey(7, "conformance.key", os.urandom(32))
        return EncryptedStore(inner(request, tmp_path), Keyring(key.id, key.key), encryption_format)
    return make


def cached(inner, disk=False, memory=64 * 2**20):
    """``inner`` behind the read cache (in memory, or on disk with a memory cache too small for anything)."""
    def make(request, tmp_path):
        cache = ReadCache(memory, 64 * 2**20, str(tmp_path / "cache") if disk else "", 256 * 2**20)
        return CachedStore(inner(request, tmp_path), cache)
    return make


def matrix(rows: dict) -> dict:
    """``rows`` (name → row), and each of them encrypted in every format: ``encrypted-a1-<name>``, …"""
    table = dict(rows)
    for name, row in rows.items():
        for encryption_format in ENCRYPTION_FORMATS:
            table[f"encrypted-{encryption_format.lower()}-{name}"] = encrypted(row, encryption_format)
    return table


def check_id(check) -> str:
    return check.__name__[len("check_"):]
