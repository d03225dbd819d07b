"""An Orthanc folder as Orthanc 1.10.1 leaves it, built by hand: ``storage/aa/bb/uuid`` files and ``index/index``."""

import hashlib
import json
import os
import sqlite3
import uuid as uuidlib
import zlib

# The two tables the tools read, as Orthanc's PrepareDatabase.sql creates them (schema 6, Orthanc 1.10.1)
SCHEMA = """
CREATE TABLE Resources(internalId INTEGER PRIMARY KEY AUTOINCREMENT, resourceType INTEGER, publicId TEXT,
                       parentId INTEGER REFERENCES Resources(internalId) ON DELETE CASCADE);
CREATE TABLE AttachedFiles(id INTEGER REFERENCES Resources(internalId) ON DELETE CASCADE, fileType INTEGER,
                           uuid TEXT, compressedSize INTEGER, uncompressedSize INTEGER, compressionType INTEGER,
                           uncompressedMD5 TEXT, compressedMD5 TEXT, PRIMARY KEY(id, fileType));
"""


class OrthancFolder:
    """An Orthanc's folder as Orthanc leaves it: ``storage/aa/bb/uuid`` files and ``index/index``."""

    def __init__(self, root, compressed=False, instances=4, dicom_size=3000):
        self.root = root
        self.storage = os.path.join(root, "storage")
        self.index = os.path.join(root, "index")
        os.makedirs(self.index)
        self.db = sqlite3.connect(os.path.join(self.index, "index"))
        self.db.executescript(SCHEMA)
        self.files = {}  # uuid -> (file type, stored bytes, resource)
        self.compressed = compressed
        patient = self.resource(1, "p" * 8, None)
        self.add(patient, 1025, b"a user-defined attachment of a patient")
        for number in range(instances):
            instance = self.resource(4, f"instance-{number}", patient)
            self.add(instance, 1, os.urandom(dicom_size + number) + b"DICM" * 100)
            self.add(instance, 3, b"header %d" % number * 40)
        self.db.commit()
        self.db.close()

    def resource(self, kind, public_id, parent):
        return self.db.execute("INSERT INTO Resources VALUES (NULL, ?, ?, ?)", (kind, public_id, parent)).lastrowid

    def add(self, resource, file_type, data):
        uuid = str(uuidlib.uuid4())
        stored = zlib.compress(data) if self.compressed else data
        self.db.execute("INSERT INTO AttachedFiles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (resource, file_type, uuid, len(stored), len(data), 2 if self.compressed else 1,
                         hashlib.md5(data).hexdigest(), hashlib.md5(stored).hexdigest()))
        path = self.path(uuid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(stored)
        self.files[uuid] = (file_type, stored)

    def path(self, uuid):
        return os.path.join(self.storage, uuid[:2], uuid[2:4], uuid)

    def names(self, encrypted=False):
        extension = {1: ".dcm", 2: ".json", 3: ".dcm.head"}
        return sorted(uuid + extension.get(kind, ".unk") + (".enc" if encrypted else "")
                      for uuid, (kind, _) in self.files.items())

    def config(self, backend, **options) -> str:
        """An Orthanc configuration next to the folders, with relative paths as administrators write them."""
        configuration = {"StorageDirectory": "storage", "IndexDirectory": "index", **backend.settings(**options)}
        path = os.path.join(self.root, "orthanc.json")
        with open(path, "w") as file:
            json.dump(configuration, file)
        return path
