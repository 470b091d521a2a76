"""The leak check of a benchmark's splits: no test case in any training or validation subset.

Run before any training (:mod:`kdbench.data.protocol_data`); the splits themselves are
:mod:`kdbench.data.splits`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from kdbench.data.splits import Splits, check_sizes, summarise_cases
from kdbench.errors import KdbenchError


class TestLeakError(KdbenchError):
    """A test case is inside a training or validation subset (or the two overlap)."""

    __test__ = False  # not a pytest test class, despite the name


def assert_no_test_leak(splits: Splits, sizes: Iterable[int] | None = None) -> None:
    """Assert that no test case is in any training or validation subset.

    Every subset is a prefix of its seed's permutation, so checking the whole permutations (no
    test case, no repeated case) covers every N; ``sizes`` are also checked one by one.

    Args:
        splits: the splits to check.
        sizes: training sizes to check explicitly (optional).

    Raises:
        TestLeakError: naming the leaked or overlapping cases.
        KdbenchError: a size is out of range.
    """
    test = set(splits.test)
    check_sizes(splits, sizes := list(sizes or ()))
    _no_overlap(test, splits.pool, "test cases in the training pool")
    for seed in splits.seeds:
        perm = splits.permutations[seed]
        _no_overlap(test, perm, f"test cases in the permutation of seed {seed}")
        repeated = [c for c, k in Counter(perm).items() if k > 1]
        # A repeated case could land in both the training and the validation part.
        _no_overlap(set(repeated), repeated, f"cases repeated in the permutation of seed {seed}")
    for seed, n in ((s, n) for s in splits.seeds for n in sizes):
        sub, where = splits.subset(n, seed), f"subset N={n} seed={seed}"
        _no_overlap(test, sub.train, f"test cases in the training part of {where}")
        _no_overlap(test, sub.validation, f"test cases in the validation part of {where}")
        _no_overlap(set(sub.train), sub.validation, f"cases in both parts of {where}")


def _no_overlap(forbidden: set[str], cases: Iterable[str], what: str) -> None:
    leaked = forbidden.intersection(cases)
    if leaked:
        raise TestLeakError(f"{what}: {summarise_cases(leaked)}")
