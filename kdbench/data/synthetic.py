"""Writing a synthetic dataset (the phantom, or any dataset plugin with ``synthetic = True``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kdbench.errors import KdbenchError
from kdbench.protocol.errors import describe_errors
from kdbench.registry import Registry


def generate_synthetic(registry: Registry, source: str, dest: Path, options: dict[str, Any]
                       ) -> Path:
    """Generate the cases of the synthetic dataset ``source`` under ``dest``.

    Args:
        registry: loaded plugins.
        source: dataset plugin name, e.g. ``"phantom"``.
        dest: output folder (created; a folder holding other data is refused by the plugin).
        options: the plugin's options (as in a protocol's ``dataset.options``).

    Returns:
        The release folder, ready for ``kdbench data prepare``.

    Raises:
        KdbenchError: unknown or non-synthetic dataset, or invalid options.
    """
    if source not in registry.datasets:
        raise KdbenchError(registry.datasets.unknown_message(source))
    cls = registry.datasets.get(source)
    if not cls.synthetic:
        raise KdbenchError(
            f"dataset {source!r} is read from disk, not generated; use `kdbench data prepare`"
        )
    try:
        validated = cls.validate_options(options)
    except ValidationError as exc:
        problems = describe_errors(exc, cls.Options, None, prefix=("options",))
        message = f"invalid options for dataset {source!r}: " + "; ".join(problems)
        raise KdbenchError(message) from None
    return cls().generate(Path(dest), validated)
