"""The data of a protocol: its prepared dataset and its splits, made once and reused.

``kdbench data prepare --protocol P`` (and later ``kdbench run``) call :func:`ensure_data`:
a synthetic source is generated first; the release is prepared (idempotently); the splits of
the protocol's split settings and seeds are made, checked for test leakage and saved beside the
dataset as ``splits/split-<id>.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdbench.data.prepare import prepare_dataset
from kdbench.data.prepared import PreparedDataset
from kdbench.data.split_checks import assert_no_test_leak
from kdbench.data.split_files import load_splits, save_splits
from kdbench.data.splits import Splits, check_sizes, make_splits
from kdbench.errors import KdbenchError, ProtocolError
from kdbench.hashing import content_id
from kdbench.protocol.checks import strategy_setting_problems, unlabelled_pool
from kdbench.protocol.models import Protocol
from kdbench.registry import Registry


@dataclass(frozen=True)
class ProtocolData:
    """A protocol's prepared dataset and splits."""

    dataset: PreparedDataset
    splits: Splits
    splits_path: Path


def dataset_name(protocol: Protocol, registry: Registry) -> str:
    """The prepared dataset's name: ``dataset.name``, else the release folder's name, else the
    synthetic source and a hash of its options (so other options never reuse it)."""
    spec = protocol.dataset
    if spec.name:
        return spec.name
    cls = registry.datasets.get(spec.source)
    if cls.synthetic:
        options = cls.validate_options(spec.options).model_dump(mode="json")
        return f"{spec.source}-{content_id({'v': cls.version, 'options': options}, 8)}"
    return Path(spec.path or "").resolve().name


def ensure_data(
    protocol: Protocol,
    registry: Registry,
    data_dir: Path,
    *,
    force: bool = False,
    exclude_bad: bool = False,
    workers: int = 1,
) -> ProtocolData:
    """Generate (if synthetic), prepare and split the protocol's dataset; reuse what exists.

    Raises:
        KdbenchError: as :func:`~kdbench.data.prepare.prepare_dataset`, plus N larger than the
            pool or a test case found in a training or validation subset.
    """
    spec = protocol.dataset
    name = dataset_name(protocol, registry)
    cls = registry.datasets.get(spec.source)
    if cls.synthetic:
        source = cls().generate(data_dir / "sources" / name, cls.validate_options(spec.options))
        reader_options = None
    else:
        source = Path(spec.path or "")
        reader_options = spec.options
        if not source.is_dir():
            raise KdbenchError(
                f"the protocol's dataset.path {spec.path!r} is not a folder (relative paths "
                f"start from the current folder, {Path.cwd()}); give the folder of the release")
    split = protocol.split

    def fits(case_ids: list[str]) -> None:  # before anything is written: sizes vs the release
        check_sizes(make_splits(case_ids, seeds=protocol.seeds, test_size=split.test_size,
                                test_fraction=split.test_fraction,
                                validation_fraction=split.validation_fraction),
                    protocol.subset_sizes)

    result = prepare_dataset(
        registry, source, name, data_dir,
        reader=None if cls.synthetic else spec.source, reader_options=reader_options,
        backbone=protocol.backbone.name, backbone_options=protocol.backbone.options,
        exclude_bad=exclude_bad, force=force, workers=workers, check_cases=fits,
    )
    dataset = PreparedDataset.open(result.path)
    splits = make_splits(
        list(dataset.cases), seeds=protocol.seeds, test_size=split.test_size,
        test_fraction=split.test_fraction, split_seed=split.seed,
        validation_fraction=split.validation_fraction,
        strata=dataset.strata() if split.stratify else None,
    )
    check_sizes(splits, protocol.subset_sizes)
    assert_no_test_leak(splits, protocol.subset_sizes)
    _check_settings(protocol, registry, splits, result.path)
    settings = {"split": split.model_dump(mode="json"), "seeds": list(protocol.seeds)}
    path = result.path / "splits" / f"split-{content_id(settings, 12)}.json"
    if path.exists():
        stored = load_splits(path)
        if stored.hash == splits.hash:
            return ProtocolData(dataset, stored, path)
    save_splits(splits, path, overwrite=force)
    return ProtocolData(dataset, splits, path)


def _check_settings(protocol: Protocol, registry: Registry, splits: Splits, path: Path) -> None:
    """The strategies' settings against the prepared cases (a release's size is known only
    now): e.g. ``unlabelled_cases`` beyond the pool, refused with its arithmetic."""
    total = len(splits.pool) + len(splits.test)
    problems = strategy_setting_problems(
        protocol, registry, unlabelled_pool(protocol, total, len(splits.test)))
    if problems:
        raise ProtocolError(f"protocol {protocol.name!r} on the {total} cases of the prepared "
                            f"dataset {path}", problems)
