"""Tests of `interp.analysis`. A package, as tests/faults is, so that a file here may share a
basename with one in tests/ without clashing on import."""
