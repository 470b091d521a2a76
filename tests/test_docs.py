"""Documentation is tested: every hook's exact signature is in docs/plugin_hooks.md."""

import inspect
import json
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


def test_strategy_defaults_documented_as_in_the_code():
    """docs/strategies.md's table of kd's hyper-parameters says what the code does."""
    import re

    from kdbench_plugins.kd import KnowledgeDistillation

    text = (DOCS / "strategies.md").read_text().split("## `kd`: defaults")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]+?) \|", text, flags=re.M))
    assert set(rows) == set(KnowledgeDistillation.hparams)
    for name, spec in KnowledgeDistillation.hparams.items():
        documented = rows[name].split(" ")[0].strip("`")
        assert KnowledgeDistillation.resolve_hparams({name: documented})[name] == spec.default, \
            name


def test_slurm_options_documented_as_in_the_code():
    """docs/cluster.md's table lists every option of the slurm executor with its default."""
    import re

    from kdbench_plugins.slurm_executor import SlurmOptions

    text = (DOCS / "cluster.md").read_text().split("Every option")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", text, flags=re.M))
    assert set(rows) == set(SlurmOptions.model_fields)
    for name, field in SlurmOptions.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        documented = rows[name].strip("`")
        if default is None:
            expected = "none"
        elif isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, (list, dict)):
            expected = json.dumps(default)
        else:
            expected = str(default)
        assert documented == expected, name


def test_the_index_lists_every_page_and_nothing_links_outside_the_repository():
    import re

    root = DOCS.parent
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w./-]+\.md)\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert linked == pages
    for page in [root / "README.md", *DOCS.glob("*.md")]:
        text = page.read_text()
        assert "../shared" not in text and "shared/design" not in text, page.name
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links {target}"
