"""Orthanc's SQLite index as the offline tools read it (on a hand-built Orthanc folder), and their progress lines.

The tools themselves (migrate, verify, re-encrypt) against moto are tests/providers/test_tools.py."""

import hashlib
import io
import os
import sqlite3

import pytest
from support.orthanc_files import OrthancFolder

from orthanc_objstore.errors import ConfigError
from orthanc_objstore.offline.index import COMPRESSION_ZLIB, read_sqlite_index
from orthanc_objstore.offline.progress import Progress


def test_sqlite_index_lists_every_attachment(tmp_path):
    orthanc = OrthancFolder(str(tmp_path), compressed=True)
    entries = read_sqlite_index(os.path.join(orthanc.index, "index"))
    assert sorted(entry.uuid for entry in entries) == sorted(orthanc.files)
    by_uuid = {entry.uuid: entry for entry in entries}
    for uuid, (kind, stored) in orthanc.files.items():
        entry = by_uuid[uuid]
        assert (entry.file_type, entry.size, entry.md5) == (kind, len(stored), hashlib.md5(stored).hexdigest())
        assert entry.compression == COMPRESSION_ZLIB and entry.uncompressed_size > 0
    patient = next(entry for entry in entries if entry.file_type == 1025)
    assert patient.resource == "patients/pppppppp" and patient.attachment().content_type == 0
    assert {entry.resource for entry in entries if entry.level == "Instance"} == {
        f"instances/instance-{n}" for n in range(4)}


def test_sqlite_index_locked_or_missing(tmp_path):
    orthanc = OrthancFolder(str(tmp_path))
    path = os.path.join(orthanc.index, "index")
    writing = sqlite3.connect(path)  # a write in progress in rollback-journal mode: index-journal exists
    writing.execute("BEGIN EXCLUSIVE")
    writing.execute("INSERT INTO Resources VALUES (NULL, 4, 'new', NULL)")
    try:
        with pytest.raises(ConfigError, match="Orthanc is running.*index-journal"):
            read_sqlite_index(path)
    finally:
        writing.close()
    running = sqlite3.connect(path)  # as Orthanc keeps it open: WAL mode, so index-wal exists
    running.execute("PRAGMA journal_mode=WAL")
    running.execute("INSERT INTO Resources VALUES (NULL, 4, 'new', NULL)")
    running.commit()
    try:
        with pytest.raises(ConfigError, match="Orthanc is running, or was not stopped cleanly.*index-wal"):
            read_sqlite_index(path)
    finally:
        running.close()
    assert len(read_sqlite_index(path)) == len(orthanc.files)  # closed cleanly: readable again
    assert os.listdir(orthanc.index) == ["index"]  # and reading it left nothing beside it
    with pytest.raises(ConfigError, match="no Orthanc SQLite index here"):
        read_sqlite_index(str(tmp_path / "nowhere" / "index"))
    not_index = tmp_path / "other.db"
    sqlite3.connect(not_index).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(ConfigError, match="cannot read it as Orthanc's SQLite index: no such table"):
        read_sqlite_index(str(not_index))


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines():
    plain, out = io.StringIO(), io.StringIO()
    with Progress("migrate", 2, 2048, stream=plain, out=out) as progress:
        progress.advance(1024)
        progress.say("missing: something")
        progress.advance(1024)
    assert plain.getvalue().splitlines()[-1].startswith("migrate: 2/2 files, 2.0 KiB/2.0 KiB (100%)")
    assert "\r" not in plain.getvalue() and out.getvalue() == "missing: something\n"
    terminal = Terminal()
    with Progress("verify", 1, 10, stream=terminal, out=io.StringIO()) as progress:
        progress.advance(10)
    assert terminal.getvalue().startswith("\r\033[K") and terminal.getvalue().endswith("ETA 0:00\n")
