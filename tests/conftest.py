"""Shared fixtures: the loaded built-in plugins and editable copies of the demo protocol."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import DEMO

from kdbench.plugin_manager import load_plugins
from kdbench.registry import Registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in plugins, unaffected by the caller's KDBENCH_* variables."""
    return load_plugins(use_env=False)


@pytest.fixture
def demo_data() -> dict[str, Any]:
    """The demo protocol as a dict, to modify in a test."""
    return copy.deepcopy(yaml.safe_load(DEMO.read_text()))


@pytest.fixture
def write_protocol(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    """Write a protocol (a dict or raw YAML text) to a temporary file."""
    counter = iter(range(10_000))

    def write(content: dict[str, Any] | str) -> Path:
        path = tmp_path / f"protocol_{next(counter)}.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def prepared_phantom(tmp_path_factory, registry):
    """A 10-case phantom at 32³, prepared through nnU-Net once per test session (~40 s)."""
    from kdbench.data.prepare import prepare_dataset
    from kdbench.data.prepared import PreparedDataset
    from kdbench_plugins.phantom import generate_phantom

    root = tmp_path_factory.mktemp("phantom_prepared")
    source = generate_phantom(root / "source", cases=10, shape=(32, 32, 32), seed=0)
    result = prepare_dataset(registry, source, "phantom", root / "data")
    return PreparedDataset.open(result.path)
