"""The offline tools: the ``orthanc-objstore`` command, migrate/verify/re-encrypt, the index read offline, progress."""
