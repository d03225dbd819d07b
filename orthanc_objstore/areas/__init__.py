"""Storage areas, what Orthanc sees: the area contract, object names, and the hybrid router."""
