"""Cluster profile files: where Jobs run, kept apart from what they compute.

A protocol may hold executor options (``executors: {slurm: {...}}``); a profile file holds the
same section for one cluster or account, so that one protocol runs unchanged on several
clusters::

    # profiles/mycluster.yaml
    executors:
      slurm:
        partition: gpu
        account: lab42
        time_min: 600
        gpus_per_node: 1

``kdbench run --executor slurm --profile profiles/mycluster.yaml`` merges the two, key by key
(the profile wins), and validates the result with the executor's options model. Neither
enters a Job id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kdbench.errors import KdbenchError, ProtocolError
from kdbench.protocol.errors import describe_errors
from kdbench.protocol.yaml_source import YamlSource, describe_yaml_error


def read_profile(path: Path) -> tuple[dict[str, dict[str, Any]], YamlSource]:
    """The ``executors`` section of a profile file (executor name -> options).

    Raises:
        KdbenchError: missing or unreadable file, or a file that is not a mapping with only
            an ``executors`` mapping of mappings (the message names the file and the key).
    """
    path = Path(path)
    try:
        source = YamlSource(path)
    except FileNotFoundError:
        raise KdbenchError(f"profile file {path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KdbenchError(f"profile file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise KdbenchError(f"profile file {path}: {describe_yaml_error(exc)}") from None
    data = source.data
    if not isinstance(data, dict) or set(data) - {"executors"}:
        extra = sorted(set(data) - {"executors"}) if isinstance(data, dict) else []
        raise KdbenchError(
            f"profile file {path}: expected a mapping with one key `executors` "
            f"(executor name -> options)" + (f"; unknown key(s): {', '.join(extra)}"
                                             if extra else ""))
    section = data.get("executors") or {}
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        raise KdbenchError(f"profile file {path}: `executors` must map executor names to "
                           "mappings of options, e.g. `executors: {slurm: {partition: gpu}}`")
    return section, source


def executor_options(cls: Any, name: str, in_protocol: dict[str, dict[str, Any]],
                     profile: Path | None) -> Any:
    """The options of executor ``cls`` (registered as ``name``): the protocol's
    ``executors.<name>`` updated by the profile's.

    Raises:
        KdbenchError: a bad profile file, or options the executor refuses (each problem named
            with its key and line in the profile).
    """
    merged = dict(in_protocol.get(name, {}))
    source = None
    if profile is not None:
        section, source = read_profile(profile)
        unknown = sorted(set(section) - {name})
        merged.update(section.get(name, {}))
        if unknown and not section.get(name):
            raise KdbenchError(f"profile file {profile} has no options for executor {name!r} "
                               f"(it has: {', '.join(unknown)}); add `executors: {{{name}: ...}}`"
                               " or choose that executor with --executor")
    try:
        return cls.validate_options(merged)
    except ValidationError as exc:
        where = str(profile) if profile is not None else "protocol"
        raise ProtocolError(where, describe_errors(exc, cls.Options, source,
                                                   prefix=("executors", name)),
                            kind=f"options of executor {name!r}") from None
