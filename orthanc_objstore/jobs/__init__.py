"""Move jobs: the step machine, the scheduler that runs them, their durable journal, and automatic tiering.

Orthanc-free: they read the index through the port and move files between areas."""
