"""Documentation is tested: every hook's exact signature is in docs/plugin_hooks.md."""

import inspect
from pathlib import Path

import pytest

from kdbench import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOOKS = [name for name in dir(hookspecs) if name.startswith("kdbench_")]


def _signature(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name), eval_str=True)
    params = ", ".join(f"{p.name}: {p.annotation.__name__}" for p in sig.parameters.values())
    ret = "None" if sig.return_annotation is None else sig.return_annotation.__name__
    return f"def {name}({params}) -> {ret}"


def test_there_are_eight_registration_hooks():
    assert len(HOOKS) == 8


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_with_exact_signature(hook):
    text = (DOCS / "plugin_hooks.md").read_text()
    assert f"### `{hook}`" in text
    assert _signature(hook) in text


def test_docs_name_no_hook_that_does_not_exist():
    import re

    text = (DOCS / "plugin_hooks.md").read_text()
    named = set(re.findall(r"### `(kdbench_\w+)`", text))
    assert named == set(HOOKS)
