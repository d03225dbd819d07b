"""What Orthanc calls: the storage callbacks, the orphan reaper, the REST routes and the archive guard.

Orthanc-free all the same: the glue (``orthanc_glue``) registers them; they reach Orthanc through the port."""
