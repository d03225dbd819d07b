"""Configuration: the option table, the rules between options, Orthanc's files as Orthanc reads them, schedules.

Every problem is found at start-up; the rest of the plugin gets frozen dataclasses."""
