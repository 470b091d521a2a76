"""``kdbench data prepare``: a release on disk -> a checked, preprocessed dataset, once.

The steps: find the reader that recognises the folder; list the cases; check every file (all
problems collected and reported together, nothing written); write the canonical case list; let
the backbone write its own form (nnU-Net raw + preprocessed) and record a summary.

Guarantees:

- **Idempotent**: a fingerprint of the source (reader, layout, file names, sizes and times),
  the options and the backbone is stored in ``prepared.json``; a second run with the same
  fingerprint does nothing. ``force=True`` redoes it.
- **Atomic**: everything is written into ``.tmp-NAME-*`` beside the target and renamed at the
  end; ``prepared.json`` is written last. An interrupted prepare leaves no folder that a later
  run would take as finished (leftovers are removed by the next run).
- **Nothing lost**: a dataset prepared from another source is never overwritten without
  ``force``; with it, the old folder is swapped out only once the new one is complete.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdbench.cases import CaseFiles, Release, alias_map, is_safe_case_id
from kdbench.errors import KdbenchError, PluginError
from kdbench.hashing import content_id
from kdbench.registry import Registry
from kdbench.version import __version__

MARKER = "prepared.json"
CASES = "cases.json"
EXCLUDED = "excluded.json"
#: Other releases' ids of the cases (BraTS 2017-2020 ids of a 2021 case, ...), from the
#: release's mapping tables; absent when it has none.
ALIASES = "aliases.json"
#: Bump when the prepared layout changes: older prepared datasets are then redone.
FORMAT = 1


@dataclass(frozen=True)
class PrepareResult:
    """What :func:`prepare_dataset` did."""

    path: Path
    created: bool
    cases: int
    excluded: list[str]
    marker: dict[str, Any]


def pick_reader(registry: Registry, source: Path, reader: str | None) -> tuple[Any, str]:
    """The dataset plugin that reads ``source`` and the layout it detected.

    Raises:
        KdbenchError: no reader (or more than one) recognises the folder, or ``reader`` is
            unknown or does not recognise it.
    """
    if not source.is_dir():
        raise KdbenchError(f"source folder {source} does not exist or is not a folder")
    if reader is not None:
        if reader not in registry.datasets:
            raise KdbenchError(registry.datasets.unknown_message(reader))
        candidates = [registry.datasets.get(reader)]
    else:
        candidates = [registry.datasets.get(n) for n in registry.datasets.names()
                      if not registry.datasets.get(n).synthetic]
    found = [(cls, layout) for cls in candidates if (layout := _detect(cls, source))]
    if not found:
        names = ", ".join(c.name for c in candidates)
        raise KdbenchError(
            f"no dataset reader ({names}) recognises {source}; expected a BraTS release "
            "(2018 HGG/LGG folders, 2019-2021 <case>/<case>_t1.nii.gz, 2023 "
            "<case>/<case>-t1n.nii.gz) or an nnU-Net raw dataset (DatasetXXX_Name with "
            "dataset.json); pass --reader to force one"
        )
    if len(found) > 1:
        names = ", ".join(f"{c.name} ({layout})" for c, layout in found)
        raise KdbenchError(f"several readers recognise {source}: {names}; choose with --reader")
    return found[0]


def _plugin_call(cls: Any, method: str, call: Callable[[], Any]) -> Any:
    """``call()``, with an exception raised inside a dataset plugin named as the plugin's."""
    try:
        return call()
    except KdbenchError:
        raise
    except Exception as exc:
        raise PluginError(f"dataset reader {cls.name!r} ({cls.__module__}.{cls.__qualname__}) "
                          f"raised in {method}: {type(exc).__name__}: {exc}; fix the plugin, or "
                          "leave it out with KDBENCH_LOAD_PLUGINS") from exc


def _detect(cls: Any, source: Path) -> str | None:
    layout = _plugin_call(cls, "detect", lambda: cls.detect(source))
    if layout is not None and not isinstance(layout, str):
        raise PluginError(f"dataset reader {cls.name!r}: detect returned "
                          f"{type(layout).__name__}; it must return a layout name or None")
    return layout


def _read(cls: Any, source: Path, options: Any) -> Release:
    release = _plugin_call(cls, "read", lambda: cls().read(source, options))
    if not isinstance(release, Release) or not all(
            isinstance(c, CaseFiles) and isinstance(c.case_id, str) for c in release.cases):
        raise PluginError(f"dataset reader {cls.name!r}: read returned "
                          f"{type(release).__name__}; it must return a kdbench.cases.Release "
                          "of CaseFiles with string ids")
    return release


def _validated(cls: Any, options: dict[str, Any] | None, what: str) -> Any:
    from pydantic import ValidationError

    from kdbench.protocol.errors import describe_errors

    try:
        return cls.validate_options(options or {})
    except ValidationError as exc:
        problems = describe_errors(exc, cls.Options, None, prefix=("options",))
        raise KdbenchError(f"invalid {what} options for {cls.name!r}: " + "; ".join(problems)
                           ) from None


def _fingerprint(release: Release, reader: Any, options: dict[str, Any],
                 backbone: dict[str, Any], exclude_bad: bool) -> str:
    def stat(path: Path | None) -> list[Any] | None:
        if path is None or not path.exists():
            return None
        info = path.stat()
        return [os.path.relpath(path, release.root), info.st_size, info.st_mtime_ns]

    cases = [
        [c.case_id, sorted(c.metadata.items()),
         sorted((m, stat(p)) for m, p in c.images.items()), stat(c.label),
         *([stat(c.reference)] if c.reference is not None else [])]
        for c in release.cases
    ]
    return content_id({
        "format": FORMAT,
        "reader": [reader.name, reader.version],
        "options": options,
        "layout": release.layout,
        "label_convention": release.label_convention,
        "cases": cases,
        "backbone": backbone,
        "exclude_bad": exclude_bad,
    })


@contextmanager
def _lock(data_dir: Path, name: str) -> Iterator[None]:
    lock_path = data_dir / f".{name}.lock"
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KdbenchError(
                f"another `kdbench data prepare` is writing {data_dir / name}; wait for it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_marker(path: Path) -> dict[str, Any] | None:
    """The ``prepared.json`` of a prepared dataset folder, or ``None`` if it is not one."""
    marker = path / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def prepare_dataset(
    registry: Registry,
    source: Path,
    name: str,
    data_dir: Path,
    *,
    reader: str | None = None,
    reader_options: dict[str, Any] | None = None,
    backbone: str = "nnunet",
    backbone_options: dict[str, Any] | None = None,
    exclude_bad: bool = False,
    force: bool = False,
    workers: int = 1,
    check_cases: Callable[[list[str]], None] | None = None,
) -> PrepareResult:
    """Check a release and prepare it for every strategy (see the module docstring).

    Args:
        registry: loaded plugins.
        source: the release folder.
        name: the dataset's name; the result goes to ``data_dir/name``.
        data_dir: where prepared datasets live.
        reader: force a dataset reader (default: the one that recognises ``source``).
        reader_options: the reader's options.
        backbone: the backbone whose preprocessing to run.
        backbone_options: its options (planner, configuration).
        exclude_bad: leave the cases with problems out (listed in ``excluded.json``)
            instead of stopping.
        force: redo a dataset already prepared.
        workers: processes for checking and preprocessing.
        check_cases: called with the ids of the cases to prepare, after the integrity checks
            and before anything is written; it raises to stop (e.g. the protocol's sizes do not
            fit the release).

    Raises:
        KdbenchError: unreadable source, problems in the data (all listed), a name taken by
            another dataset, or another prepare running on the same name.
    """
    if not is_safe_case_id(name):
        raise KdbenchError(f"dataset name {name!r} must be letters, digits, '_', '.', '-'")
    source = Path(source).resolve()
    data_dir = Path(data_dir)
    target = data_dir / name
    reader_cls, _ = pick_reader(registry, source, reader)
    options = _validated(reader_cls, reader_options, "reader")
    if backbone not in registry.backbones:
        raise KdbenchError(registry.backbones.unknown_message(backbone))
    backbone_cls = registry.backbones.get(backbone)
    bb_options = _validated(backbone_cls, backbone_options, "backbone")
    bb_key = {"name": backbone_cls.name, "version": backbone_cls.version,
              "options": backbone_cls.preparation_options(bb_options)}

    release = _read(reader_cls, source, options)
    fingerprint = _fingerprint(release, reader_cls, options.model_dump(mode="json"), bb_key,
                               exclude_bad)
    aliases = alias_map(release.aliases, (c.case_id for c in release.cases))
    marker = read_marker(target)
    if marker is not None and marker.get("fingerprint") == fingerprint and not force:
        _sync_aliases(target, aliases)
        return PrepareResult(target, False, marker["cases"], marker["excluded"], marker)
    if target.exists() and not force:
        what = (f"was prepared from {marker.get('source')} with other files or options"
                if marker else "exists and is not a prepared kdbench dataset")
        raise KdbenchError(f"{target} {what}; pass --force to redo it, or choose another --name")

    cases, problems, bad = _usable_cases(release, source, workers, exclude_bad)
    if check_cases is not None:
        check_cases([c.case_id for c in cases])

    data_dir.mkdir(parents=True, exist_ok=True)
    with _lock(data_dir, name):
        for stale in [*data_dir.glob(f".tmp-{name}-*"), *data_dir.glob(f".old-{name}-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = data_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_cases(tmp, release, source, cases, [p for p in problems if p.case in bad])
            _sync_aliases(tmp, aliases)
            (tmp / backbone_cls.name).mkdir()
            summary = backbone_cls().prepare(cases, release.label_map, tmp / backbone_cls.name,
                                             bb_options, name=name, num_processes=workers)
            _check_summary(backbone_cls.name, summary)
            marker = {
                "format": FORMAT,
                "name": name,
                "fingerprint": fingerprint,
                "source": str(source),
                "reader": reader_cls.name,
                "layout": release.layout,
                "label_convention": release.label_convention,
                "cases": len(cases),
                "excluded": sorted(bad),
                "backbone": {**bb_key, "summary": summary},
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "kdbench_version": __version__,
            }
            _write_json(tmp / MARKER, marker)  # last: its presence means the folder is complete
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed prepare leaves no half folder
            raise
        _swap_in(tmp, target)
    return PrepareResult(target, True, len(cases), sorted(bad), marker)


def _usable_cases(release: Release, source: Path, workers: int, exclude_bad: bool
                  ) -> tuple[list[CaseFiles], list[Any], set[str]]:
    """Every file checked: the cases to prepare, every problem found and the bad cases' ids.

    Raises:
        KdbenchError: listing every problem, unless ``exclude_bad`` leaves the bad cases out
            (a problem of the release itself always stops), or when no case is left.
    """
    from kdbench.data.integrity import bad_cases, check_release, format_report

    problems = check_release(release, workers=workers)
    bad = bad_cases(problems)
    release_level = [p for p in problems if p.case is None]
    if release_level or (problems and not exclude_bad):
        hint = "" if release_level else (
            "\nFix these files, or leave the cases out with --exclude-bad."
        )
        raise KdbenchError(format_report(source, problems) + hint)
    cases = [c for c in release.cases if c.case_id not in bad]
    if not cases:
        raise KdbenchError(f"no usable case left in {source} after excluding {len(bad)} bad ones")
    return cases, problems, bad


def _write_cases(folder: Path, release: Release, source: Path, cases: list[CaseFiles],
                 excluded: list[Any]) -> None:
    """The canonical case list (paths relative to the release) and, if any case was left out,
    ``excluded.json`` with its problems."""
    _write_json(folder / CASES, {
        "label_convention": release.label_convention,
        "cases": [{"id": c.case_id, "metadata": dict(c.metadata),
                   "images": {m: os.path.relpath(p, source) for m, p in c.images.items()},
                   "label": os.path.relpath(c.label, source) if c.label else None,
                   **({"reference": os.path.relpath(c.reference, source)}
                      if c.reference is not None else {})}
                  for c in cases],
    })
    if excluded:
        _write_json(folder / EXCLUDED, [
            {"case": p.case, "file": str(p.file) if p.file else None, "problem": p.problem}
            for p in excluded])


def _sync_aliases(folder: Path, aliases: dict[str, tuple[str, ...]]) -> None:
    """Write ``aliases.json`` (other id -> case ids) when it differs from the release's mapping
    tables; remove it when the release has none. The aliases are not in the fingerprint: a
    mapping table added to a prepared release updates this file without preparing again.

    Raises:
        KdbenchError: the prepared folder cannot be written (shared read-only data).
    """
    path = folder / ALIASES
    wanted = {"aliases": {k: list(v) for k, v in aliases.items()}} if aliases else None
    try:
        stored = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        stored = False  # unreadable: rewrite it
    if stored == wanted:
        return
    try:
        if wanted is None:
            path.unlink()
        else:
            _write_json(path, wanted)
    except OSError as exc:
        raise KdbenchError(
            f"{path} does not match the release's mapping tables and cannot be updated "
            f"({exc.strerror or exc}): run `kdbench data prepare` once where the data folder "
            "is writable") from None


def _check_summary(backbone: str, summary: Any) -> None:
    """Refuse a backbone's prepare summary that cannot be stored as JSON."""
    try:
        json.dumps(summary)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"backbone {backbone!r}: prepare returned a summary that is not JSON "
                          f"({exc}); return plain dicts, lists, strings and numbers") from None


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` to ``target``; an existing target is moved aside first and
    removed only once the new folder is in place."""
    if target.exists():
        old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
