"""orthanc-objstore: Orthanc's storage area in S3, Azure Blob Storage or Google Cloud Storage."""

__version__ = "0.1.0"
