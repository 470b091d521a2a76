"""The held-out test set and the nested training subsets of a benchmark.

:func:`make_splits` draws one held-out test set (stratified by grade/source when known); each
training seed orders the remaining pool into one permutation whose prefixes are the training
subsets, so N=25 ⊂ 50 ⊂ 100 … by construction, with a validation part nested the same way.

Every order comes from hashing, not from a random number stream: a case's rank is the SHA-256 of
``kdbench/<purpose>/<seeds>/<case_id>``, the same on every platform and library version, and
adding or removing a case leaves the relative order of the others unchanged. Splits are saved as
JSON beside the dataset with a content hash that every Job records
(:mod:`kdbench.data.split_files`), and checked for test leaks before any training
(:mod:`kdbench.data.split_checks`).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from kdbench.cases import is_safe_case_id
from kdbench.errors import KdbenchError
from kdbench.hashing import content_id

#: File format and hashing scheme version; bump it whenever the order a seed gives could change.
FORMAT = "kdbench-splits"
SCHEME_VERSION = 1
#: The stratum of cases whose grade/source is not known.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Subset:
    """The training subset of size ``n`` for one training seed.

    Attributes:
        n: number of cases (training plus validation).
        seed: the training seed.
        train: cases to train on, in permutation order.
        validation: cases held for early stopping and pruning, in permutation order.
        cases: all ``n`` cases in permutation order (stored: the interleaving depends on vf).
    """

    n: int
    seed: int
    train: tuple[str, ...]
    validation: tuple[str, ...]
    cases: tuple[str, ...]


@dataclass(frozen=True)
class Splits:
    """The test set, the training pool and one pool permutation per training seed.

    Attributes:
        test: held-out test cases, sorted.
        pool: every other case, sorted.
        permutations: training seed -> the pool in that seed's order.
        settings: split seed, resolved test size, validation fraction, strata counts, scheme.
    """

    test: tuple[str, ...]
    pool: tuple[str, ...]
    permutations: dict[int, tuple[str, ...]]
    settings: dict[str, Any]

    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds, ascending."""
        return tuple(sorted(self.permutations))

    def subset(self, n: int, seed: int) -> Subset:
        """The first ``n`` cases of ``seed``'s permutation, split into training and validation.

        Position ``i`` is a validation case iff ``ceil((i+1)*vf) > ceil(i*vf)``: every prefix of
        size ``n`` holds exactly ``ceil(n*vf) >= 1`` of them and both parts are nested in ``n``.

        Args:
            n: the subset size, 2 <= n <= len(pool).
            seed: a training seed given to :func:`make_splits`.

        Returns:
            The subset.

        Raises:
            KdbenchError: ``n`` is out of range or ``seed`` unknown.
        """
        check_sizes(self, [n])
        if seed not in self.permutations:
            raise KdbenchError(
                f"training seed {seed} is not in the splits (seeds {list(self.seeds)}); "
                f"add it to the protocol's seeds and rerun `kdbench data prepare`"
            )
        cases = self.permutations[seed][:n]
        vf = _fraction(self.settings["validation_fraction"])
        mask = [math.ceil((i + 1) * vf) > math.ceil(i * vf) for i in range(n)]
        train = tuple(c for c, v in zip(cases, mask, strict=True) if not v)
        val = tuple(c for c, v in zip(cases, mask, strict=True) if v)
        return Subset(n, seed, train, val, cases)

    def _content(self) -> dict[str, Any]:  # what defines the splits (subsets are derived)
        return {
            "format": FORMAT,
            "version": SCHEME_VERSION,
            "settings": self.settings,
            "test": list(self.test),
            "pool": list(self.pool),
            "permutations": {str(s): list(self.permutations[s]) for s in self.seeds},
        }

    @property
    def hash(self) -> str:
        """Content hash (16 hex digits) of everything that defines the splits."""
        return content_id(self._content())

    def seed_hash(self, seed: int) -> str:
        """Like :attr:`hash` but with only ``seed``'s permutation: unchanged by adding seeds."""
        content = self._content()
        content["permutations"] = {str(seed): list(self.permutations[seed])}
        return content_id(content)

    def to_json(self) -> dict[str, Any]:
        """The splits as a JSON-ready dict, with its ``hash``."""
        return {**self._content(), "hash": self.hash}

    @classmethod
    def from_json(cls, data: Any) -> Splits:
        """Rebuild splits from :meth:`to_json` output, checking its hash and structure.

        Raises:
            KdbenchError: the data is malformed, inconsistent or does not match its hash.
        """
        try:
            if data["format"] != FORMAT or data["version"] != SCHEME_VERSION:
                raise ValueError(f"format {data['format']!r} version {data['version']!r}")
            splits = cls(
                test=_str_tuple(data["test"]),
                pool=_str_tuple(data["pool"]),
                permutations={int(s): _str_tuple(p) for s, p in data["permutations"].items()},
                settings=dict(data["settings"]),
            )
            _fraction(splits.settings["validation_fraction"])
            stored = data["hash"]
        except (KdbenchError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise KdbenchError(f"malformed splits data ({exc})") from exc
        unsafe = next((c for c in (*splits.test, *splits.pool) if not is_safe_case_id(c)), None)
        if unsafe is not None:  # ids name prediction files: refuse before anything uses them
            raise KdbenchError(f"case id {unsafe!r} is not safe as a file name")
        if stored != splits.hash:
            raise KdbenchError(f"splits hash {stored!r} does not match the content")
        if set(splits.test) & set(splits.pool) or any(
            sorted(p) != list(splits.pool) for p in splits.permutations.values()
        ):
            raise KdbenchError("inconsistent splits: a permutation is not the training pool")
        return splits


def make_splits(
    case_ids: Iterable[str],
    *,
    seeds: Iterable[int],
    test_size: int | None = None,
    test_fraction: float | None = None,
    split_seed: int = 0,
    validation_fraction: float = 0.2,
    strata: Mapping[str, str | None] | None = None,
) -> Splits:
    """Draw the test set and the per-seed pool permutations.

    Args:
        case_ids: every case of the dataset (order does not matter).
        seeds: the training seeds (one permutation each); they do not affect the test set.
        test_size: number of test cases; give this or ``test_fraction``.
        test_fraction: share of all cases for testing (rounded, at least 1).
        split_seed: seed of the test draw, also mixed into every permutation.
        validation_fraction: share of each subset held for validation, 0 < vf < 0.5.
        strata: case id -> stratum (e.g. grade ``HGG``/``LGG``); cases not in it (or mapped to
            ``None``) form the stratum ``"unknown"``. ``None``: no stratification.

    Returns:
        The splits.

    Raises:
        KdbenchError: no or duplicate cases, a bad size or fraction, or no training case left.
    """
    ids = list(case_ids)
    if not ids or any(not isinstance(c, str) or not c for c in ids):
        raise KdbenchError("no cases to split, or an empty case id; check the dataset folder")
    dupes = sorted(c for c, k in Counter(ids).items() if k > 1)
    if dupes:
        raise KdbenchError(f"case ids listed more than once: {summarise_cases(dupes)}; "
                           "make ids unique")
    _fraction(validation_fraction)
    total = len(ids)
    n_test = _test_count(total, test_size, test_fraction)

    # Without strata every case is "unknown": one stratum, i.e. the first n_test in hash order.
    known = strata or {}
    labels = {c: UNKNOWN if known.get(c) is None else str(known[c]) for c in ids}
    by_stratum: dict[str, list[str]] = {}
    for case in _hash_order(ids, "test", split_seed):
        by_stratum.setdefault(labels[case], []).append(case)
    alloc = largest_remainder({s: len(c) for s, c in by_stratum.items()}, n_test)
    test = [c for s, cases in by_stratum.items() for c in cases[: alloc[s]]]
    pool = tuple(sorted(set(ids) - set(test)))

    counts = {k: dict(sorted(Counter(labels[c] for c in v).items())) for k, v in
              (("test", test), ("pool", pool))}
    settings = {
        "split_seed": split_seed,
        "total_cases": total,
        "test_size": n_test,
        "validation_fraction": float(validation_fraction),
        "strata": counts if strata is not None else None,
        "scheme": f"sha256/kdbench/<purpose>/<seeds>/<case_id> v{SCHEME_VERSION}",
    }
    # The split seed is mixed in so that two protocols with different split seeds differ.
    perms = {s: tuple(_hash_order(pool, "train", split_seed, s)) for s in sorted(set(seeds))}
    return Splits(tuple(sorted(test)), pool, perms, settings)


def check_sizes(splits: Splits, sizes: Iterable[int]) -> None:
    """Raise if any training size is below 2 or larger than the training pool.

    Raises:
        KdbenchError: naming the first bad size, the pool size and the fix.
    """
    pool, n_test = len(splits.pool), len(splits.test)
    for n in sizes:
        if n > pool:
            raise KdbenchError(
                f"N={n} is larger than the training pool of {pool} cases ({pool + n_test} cases "
                f"minus {n_test} for testing); lower N or add cases"
            )
        if n < 2:
            raise KdbenchError(f"N={n} is too small: a subset needs a training and a validation "
                               "case; use N >= 2")


def _test_count(total: int, test_size: int | None, test_fraction: float | None) -> int:
    if (test_size is None) == (test_fraction is None):
        raise KdbenchError("give exactly one of test_size and test_fraction")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise KdbenchError(f"test_fraction={test_fraction} must be between 0 and 1")
    if test_size is not None and (isinstance(test_size, bool) or not isinstance(test_size, int)
                                  or test_size < 1):
        raise KdbenchError(f"test_size={test_size!r} must be a positive integer")
    # Same rounding as the protocol check, so both report the same test size.
    n = test_size if test_fraction is None else max(1, round(test_fraction * total))
    if n >= total:
        raise KdbenchError(f"a test set of {n} cases leaves no training case (the dataset has "
                           f"{total}); make test_size or test_fraction smaller")
    return n


def _hash_order(ids: Iterable[str], purpose: str, *seeds: int) -> list[str]:
    # Each case's key depends only on its own id and the seeds, so removing a case leaves the
    # relative order of the others unchanged; the id breaks (astronomically unlikely) ties.
    prefix = "/".join(["kdbench", purpose, *map(str, seeds)]) + "/"
    return sorted(ids, key=lambda c: (hashlib.sha256((prefix + c).encode()).hexdigest(), c))


def largest_remainder(counts: Mapping[str, int], seats: int) -> dict[str, int]:
    """Share ``seats`` among strata proportionally to ``counts`` (largest-remainder method).

    Each gets the floor of its exact quota; the seats left go to the largest remainders, ties
    broken by stratum name.
    """
    total = sum(counts.values())
    quotas = {s: Fraction(seats * k, total) for s, k in counts.items()}
    alloc = {s: math.floor(q) for s, q in quotas.items()}
    left = seats - sum(alloc.values())
    for s in sorted(quotas, key=lambda s: (-(quotas[s] - alloc[s]), s))[:left]:
        alloc[s] += 1
    return alloc


def _fraction(validation_fraction: Any) -> Fraction:
    # Exact rationals: in floats 0.07 * 100 is 7.000000000000001, whose ceil is 8.
    vf = Fraction(str(validation_fraction))
    if not 0 < vf < Fraction(1, 2):
        raise KdbenchError(f"validation_fraction={validation_fraction} must be in (0, 0.5)")
    return vf


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError("expected a list of case ids")
    return tuple(value)


def summarise_cases(cases: Iterable[str], limit: int = 10) -> str:
    """The first ``limit`` case ids, sorted, and how many more there are."""
    cases = sorted(cases)
    more = f" (and {len(cases) - limit} more)" if len(cases) > limit else ""
    return ", ".join(cases[:limit]) + more
