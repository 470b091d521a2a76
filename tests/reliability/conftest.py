"""The reliability tests' grid, the fixture ``grid`` (tests/conftest.py): the demo's strategies
(mono, multi as upper bound and teacher, kd) on the session's prepared phantom with a tiny
network and budget, and its uninterrupted reference run, compared with every interrupted or
concurrent one."""
