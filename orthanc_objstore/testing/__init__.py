"""Test helpers shipped with the package: the store conformance suite."""
