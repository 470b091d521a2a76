"""Protocols: versioned YAML files that fix everything a benchmark compares under."""

from kdbench.protocol.loader import load_protocol, read_protocol
from kdbench.protocol.models import SCHEMA_VERSION, Protocol, ScenarioSpec, StrategySpec

__all__ = [
    "SCHEMA_VERSION",
    "Protocol",
    "ScenarioSpec",
    "StrategySpec",
    "load_protocol",
    "read_protocol",
]
