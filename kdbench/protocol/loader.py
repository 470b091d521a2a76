"""Loading a protocol: YAML, then the schema, then the names of plugins and their options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from kdbench.errors import KdbenchError, ProtocolError
from kdbench.protocol.errors import describe_errors
from kdbench.protocol.models import SCHEMA_VERSION, Protocol
from kdbench.protocol.yaml_source import YamlSource, describe_yaml_error

if TYPE_CHECKING:
    from kdbench.registry import Registry


def read_protocol(path: Path) -> tuple[Protocol, YamlSource]:
    """Parse and schema-check a protocol file (no plugin is consulted).

    Raises:
        KdbenchError: the file is missing or unreadable.
        ProtocolError: invalid YAML or schema problems, every one listed with its line.
    """
    path = Path(path)
    try:
        source = YamlSource(path)
    except FileNotFoundError:
        raise KdbenchError(f"protocol file {path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KdbenchError(f"protocol file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(str(path), [describe_yaml_error(exc)]) from None
    if not isinstance(source.data, dict):
        raise ProtocolError(
            str(path),
            [f"the file must hold a mapping with `kdbench_protocol: {SCHEMA_VERSION}` at the top, "
             f"got {type(source.data).__name__}"],
        )
    try:
        protocol = Protocol.model_validate(source.data)
    except ValidationError as exc:
        raise ProtocolError(str(path), describe_errors(exc, Protocol, source)) from None
    return protocol, source


def load_protocol(path: Path, registry: Registry) -> Protocol:
    """Read a protocol and check it against the loaded plugins.

    Raises:
        KdbenchError, ProtocolError: as :func:`read_protocol`, plus unknown plugin names,
            invalid plugin options or hyper-parameters, sizes the dataset cannot hold.
    """
    from kdbench.protocol.checks import check_against_registry

    protocol, source = read_protocol(path)
    problems = check_against_registry(protocol, registry, source)
    if problems:
        raise ProtocolError(str(path), problems)
    return protocol


__all__ = ["load_protocol", "read_protocol"]
