"""Client-side encryption formats A1 (the official plugin's), A2 and A3 (ours): bytes and keys only.

No store, no configuration, no Orthanc: ``formats`` is the front door, ``keys`` what every format shares."""
