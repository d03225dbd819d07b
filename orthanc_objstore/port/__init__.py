"""The port to Orthanc: ``OrthancApi`` and the index queries over it, and its loopback HTTP implementation.

Every access of the plugin to Orthanc's REST API and index goes through this port (SPEC Q-5)."""
