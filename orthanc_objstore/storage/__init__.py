"""The storage layer: the store protocol every provider and wrapper implements, buffers, and the encryption wrapper.

Providers (one SDK each) are in ``providers``; nothing here knows Orthanc or the configuration."""
