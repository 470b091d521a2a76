"""What a dataset reader returns: the cases of a release, their files, and the problems found.

Every release is mapped to one canonical form:

- channels ``t1, t1ce, t2, flair`` (:data:`kdbench.modalities.MODALITIES`);
- labels in nnU-Net's BraTS convention, contiguous and nested so that region-based training
  works: 0 background, 1 edema, 2 necrotic / non-enhancing core, 3 enhancing tumour; regions
  WT = {1, 2, 3}, TC = {2, 3}, ET = {3} (:data:`REGIONS`).

Each release keeps the map from its own label values to the canonical ones, so predictions can
be exported back in the source convention.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Canonical label values.
BACKGROUND, EDEMA, CORE, ENHANCING = 0, 1, 2, 3
CANONICAL_LABELS: dict[str, int] = {
    "background": BACKGROUND,
    "edema": EDEMA,
    "necrotic_core": CORE,
    "enhancing": ENHANCING,
}

#: BraTS evaluation regions as sets of canonical labels (nnU-Net's ``regions_class_order``
#: is (1, 2, 3): WT, then TC, then ET overwrite each other in that order).
REGIONS: dict[str, tuple[int, ...]] = {
    "WT": (EDEMA, CORE, ENHANCING),
    "TC": (CORE, ENHANCING),
    "ET": (ENHANCING,),
}

#: Source label value -> canonical value, per BraTS label convention.
LABEL_MAPS: dict[str, dict[int, int]] = {
    # 2018-2021: 1 necrotic/non-enhancing core, 2 edema, 4 enhancing tumour
    "brats2021": {0: BACKGROUND, 1: CORE, 2: EDEMA, 4: ENHANCING},
    # 2023+: 1 necrotic core, 2 edema, 3 enhancing tumour
    "brats2023": {0: BACKGROUND, 1: CORE, 2: EDEMA, 3: ENHANCING},
    # already canonical (an nnU-Net raw dataset in nnU-Net's BraTS convention)
    "canonical": {0: BACKGROUND, 1: EDEMA, 2: CORE, 3: ENHANCING},
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a release, phrased for the user.

    Attributes:
        case: the case id (``None`` for a problem of the whole release).
        file: the file concerned, when there is one.
        problem: what is wrong, e.g. ``"NaN voxels (12)"``.
        fix: what to do, e.g. ``"re-export the image, or leave the case out with --exclude-bad"``.
    """

    case: str | None
    file: Path | None
    problem: str
    fix: str

    def line(self) -> str:
        """``case  file: problem; fix``."""
        where = " ".join(str(x) for x in (self.case or "<release>", self.file or "") if x)
        return f"{where}: {self.problem}; {self.fix}"


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case in a release.

    Attributes:
        case_id: the id used everywhere downstream (must be safe as a file name).
        images: canonical modality -> file; a missing modality is absent here and reported as
            a :class:`Problem`.
        label: the segmentation file (``None`` if missing, reported as a problem).
        metadata: e.g. ``{"grade": "HGG", "source_id": "Brats18_2013_2_1"}``; ``grade`` (or
            ``source``) is used to stratify the test set.
        reference: a second segmentation that scoring uses instead of ``label`` (e.g. the
            phantom's true labels beside a rater's noisy annotation, ``<case>_seg_reference``):
            training and validation read ``label`` only. ``None``: ``label`` is the reference.
    """

    case_id: str
    images: Mapping[str, Path]
    label: Path | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    reference: Path | None = None


@dataclass
class Release:
    """A release on disk as a reader sees it, before the integrity checks read any voxel.

    Attributes:
        root: the folder given by the user.
        layout: ``"2018"``, ``"2019-2021"``, ``"2023"`` or ``"nnunet"``.
        label_convention: a key of :data:`LABEL_MAPS`.
        cases: the cases found, sorted by id.
        problems: problems found while listing files (missing modality, duplicate or unsafe
            case id, empty release).
        aliases: groups of ids that name the same patient in several releases (BraTS 2017 to
            2023), one group per row of the release's mapping tables (``name_mapping.csv``,
            ``BraTS21-17_Mapping.csv``, ...); empty when the release ships none. A pretrained
            teacher's declared training cases are mapped to this release's ids through them
            (:func:`alias_map`; docs/foundation_teacher.md).
    """

    root: Path
    layout: str
    label_convention: str
    cases: list[CaseFiles]
    problems: list[Problem] = field(default_factory=list)
    aliases: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def label_map(self) -> Mapping[int, int]:
        """Source label value -> canonical label value."""
        return LABEL_MAPS[self.label_convention]


def alias_map(groups: Iterable[Iterable[str]], case_ids: Iterable[str]
              ) -> dict[str, tuple[str, ...]]:
    """Every other id of a patient -> the case ids of the release that name the same patient.

    Args:
        groups: ids naming one patient each (:attr:`Release.aliases`); groups sharing an id
            are one patient.
        case_ids: the ids of the release's cases.

    Returns:
        The map, sorted, for ids that are not case ids themselves and whose group holds a case
        id (a case id is compared as it is: it needs no entry).
    """
    ids = set(case_ids)
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        members = [str(g) for g in group]
        for other in members[1:]:
            parent[root(other)] = root(members[0])
    linked: dict[str, set[str]] = {}
    for member in parent:
        linked.setdefault(root(member), set()).add(member)
    out: dict[str, tuple[str, ...]] = {}
    for members in linked.values():
        cases = tuple(sorted(members & ids))
        if cases:
            out.update({m: cases for m in members - ids})
    return dict(sorted(out.items()))


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def is_safe_case_id(case_id: str) -> bool:
    """Whether ``case_id`` can name files and folders everywhere: ASCII letters, digits, ``_``,
    ``.``, ``-``; starts with a letter or digit; at most 128 characters; no ``..``.

    This refuses path separators, ``..``, absolute paths, NUL and control characters, spaces
    and every non-ASCII letter (``é`` may be one code point or two, depending on the file
    system that wrote the name, so the same case could get two ids); see docs/security.md.
    """
    return (isinstance(case_id, str) and bool(_SAFE_ID.fullmatch(case_id))
            and ".." not in case_id)


def unsafe_id_problem(case_id: str, file: Path | None, fix_tail: str) -> Problem | None:
    """The problem of an id that :func:`is_safe_case_id` refuses, or ``None`` for a safe one.

    Args:
        case_id: the id.
        file: the file or folder that gave the id.
        fix_tail: appended to the fix, e.g. ``"or leave the case out with --exclude-bad"``.
    """
    if is_safe_case_id(case_id):
        return None
    return Problem(case_id, file, f"case id {case_id!r} is not safe as a file name (ASCII "
                   "letters, digits, '_', '.', '-' only)", f"rename its files, {fix_tail}")


def check_case_ids(case_ids: Iterable[str], where: str) -> None:
    """Raise when an id read back from a kdbench file is not safe as a file name.

    Args:
        case_ids: ids from e.g. ``cases.json`` or a splits file (which only kdbench writes,
            from ids it checked: another id means the file was edited).
        where: the file, for the message.

    Raises:
        KdbenchError: naming the first unsafe id.
    """
    from kdbench.errors import KdbenchError

    for cid in case_ids:
        if not is_safe_case_id(cid):
            raise KdbenchError(
                f"{where}: case id {cid!r} is not safe as a file name (ASCII letters, digits, "
                "'_', '.', '-' only); the file was edited by hand or corrupted: delete it and "
                "rerun `kdbench data prepare`")
