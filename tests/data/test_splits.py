"""Splits: one held-out test set, nested training subsets, hashing, files, leak checks."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from kdbench.data import split_checks, split_files
from kdbench.data import splits as sp
from kdbench.errors import KdbenchError

IDS = [f"BraTS2021_{i:05d}" for i in range(1251)]
SIZES = (25, 50, 100, 200, 400, 700, 1000)
SEEDS = (0, 1, 2)
VF = 0.2


@pytest.fixture(scope="module")
def splits() -> sp.Splits:
    return sp.make_splits(IDS, seeds=SEEDS, test_size=251, split_seed=7, validation_fraction=VF)


@pytest.fixture(scope="module")
def grades() -> dict[str, str]:
    # Every fifth case is LGG (20%), ids spread over the whole range.
    return {c: "LGG" if i % 5 == 0 else "HGG" for i, c in enumerate(IDS)}


def test_sizes_and_partition(splits: sp.Splits) -> None:
    assert len(splits.test) == 251 and len(splits.pool) == 1000
    assert set(splits.test) | set(splits.pool) == set(IDS)
    assert not set(splits.test) & set(splits.pool)
    assert splits.seeds == SEEDS
    for perm in splits.permutations.values():
        assert sorted(perm) == list(splits.pool)


def test_subsets_are_nested(splits: sp.Splits) -> None:
    for seed in SEEDS:
        subs = [splits.subset(n, seed) for n in SIZES]
        for small, big in itertools.combinations(subs, 2):
            assert set(small.train) <= set(big.train)
            assert set(small.validation) <= set(big.validation)
            assert set(small.cases) <= set(big.cases)
            assert big.cases[: small.n] == small.cases


def test_subset_parts(splits: sp.Splits) -> None:
    for seed, n in itertools.product(SEEDS, (2, 3, 5, *SIZES)):
        sub = splits.subset(n, seed)
        assert (sub.n, sub.seed) == (n, seed)
        assert len(sub.cases) == n == len(sub.train) + len(sub.validation)
        assert len(sub.validation) == math.ceil(Fraction(n) * Fraction(1, 5)) >= 1
        assert len(sub.train) >= 1
        assert not set(sub.train) & set(sub.validation)
        assert set(sub.cases) == set(sub.train) | set(sub.validation)
        assert sub.cases == splits.permutations[seed][:n]
        assert not set(sub.cases) & set(splits.test)


def test_validation_count_exact_for_awkward_fractions() -> None:
    s = sp.make_splits(IDS[:200], seeds=[0], test_size=10, validation_fraction=0.07)
    # In floats 0.07 * 100 is 7.000000000000001 (ceil 8); exact arithmetic gives 7.
    assert math.ceil(0.07 * 100) == 8
    assert len(s.subset(100, 0).validation) == 7
    assert len(s.subset(101, 0).validation) == 8


def test_deterministic(splits: sp.Splits) -> None:
    again = sp.make_splits(
        list(reversed(IDS)), seeds=SEEDS, test_size=251, split_seed=7, validation_fraction=VF
    )
    assert again == splits
    assert again.hash == splits.hash and len(splits.hash) == 16
    data = json.loads(json.dumps(splits.to_json()))
    back = sp.Splits.from_json(data)
    assert back == splits and back.hash == splits.hash == data["hash"]
    assert back.subset(100, 1) == splits.subset(100, 1)


def test_seeds_differ(splits: sp.Splits) -> None:
    perms = [splits.permutations[s] for s in SEEDS]
    firsts = [set(splits.subset(25, s).cases) for s in SEEDS]
    for a, b in itertools.combinations(range(len(SEEDS)), 2):
        assert perms[a] != perms[b]
        assert firsts[a] != firsts[b]


def test_test_set_independent_of_training_seeds(splits: sp.Splits) -> None:
    other = sp.make_splits(IDS, seeds=[5, 9], test_size=251, split_seed=7)
    assert other.test == splits.test and other.pool == splits.pool
    # A seed's permutation does not depend on which other seeds are listed.
    both = sp.make_splits(IDS, seeds=[1, 9], test_size=251, split_seed=7)
    assert both.permutations[1] == splits.permutations[1]
    assert both.seed_hash(1) == splits.seed_hash(1) and both.hash != splits.hash


def test_split_seed_changes_everything(splits: sp.Splits) -> None:
    other = sp.make_splits(IDS, seeds=SEEDS, test_size=251, split_seed=8)
    assert set(other.test) != set(splits.test)
    assert other.hash != splits.hash
    # The split seed is mixed into the permutations too.
    assert other.permutations[0][:25] != splits.permutations[0][:25]


def test_test_fraction() -> None:
    s = sp.make_splits(IDS, seeds=[0], test_fraction=0.2)
    assert len(s.test) == round(0.2 * 1251) == 250
    assert s.settings["test_size"] == 250
    assert len(sp.make_splits(IDS[:3], seeds=[0], test_fraction=0.01).test) == 1


def _largest_remainder(counts: dict[str, int], seats: int) -> dict[str, int]:
    """Independent reference: integer arithmetic on seats * count = q * total + r."""
    total = sum(counts.values())
    base = {s: seats * k // total for s, k in counts.items()}
    rem = {s: seats * k % total for s, k in counts.items()}
    order = sorted(counts, key=lambda s: (-rem[s], s))
    for s in order[: seats - sum(base.values())]:
        base[s] += 1
    return base


def test_stratified(grades: dict[str, str]) -> None:
    s = sp.make_splits(IDS, seeds=SEEDS, test_size=251, split_seed=3, strata=grades)
    lgg_test = sum(grades[c] == "LGG" for c in s.test)
    expected = _largest_remainder(dict(Counter(grades.values())), 251)
    assert lgg_test == expected["LGG"]
    assert abs(lgg_test - 251 * 0.2) <= 1 and 0 < lgg_test < 251
    assert s.settings["strata"]["test"] == expected
    assert s.settings["strata"]["pool"] == {"HGG": 1000 - (251 - lgg_test), "LGG": 251 - lgg_test}
    assert sp.largest_remainder({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}
    # Whatever the split seed, the stratified share is exact.
    for seed in range(10):
        t = sp.make_splits(IDS, seeds=[], test_size=251, split_seed=seed, strata=grades).test
        assert sum(grades[c] == "LGG" for c in t) == expected["LGG"]


def test_stratified_unknown_and_single_stratum(grades: dict[str, str]) -> None:
    partial = {c: g for c, g in list(grades.items())[:600]}
    s = sp.make_splits(IDS, seeds=[0], test_size=251, strata=partial)
    counts = s.settings["strata"]["test"]
    assert set(counts) == {"HGG", "LGG", "unknown"} and sum(counts.values()) == 251
    assert counts == _largest_remainder({"HGG": 480, "LGG": 120, "unknown": 651}, 251)
    # One stratum for every case gives the unstratified test set.
    one = sp.make_splits(IDS, seeds=[0], test_size=251, strata={})
    assert one.test == sp.make_splits(IDS, seeds=[0], test_size=251).test


def test_removing_a_case_keeps_relative_order(splits: sp.Splits) -> None:
    removed = splits.pool[123]
    fewer = sp.make_splits(
        [c for c in IDS if c != removed], seeds=SEEDS, test_size=251, split_seed=7
    )
    assert fewer.test == splits.test
    for seed in SEEDS:
        assert fewer.permutations[seed] == tuple(
            c for c in splits.permutations[seed] if c != removed
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_size": 1251}, "test set of 1251 cases leaves no training case"),
        ({"test_size": 2000}, "the dataset has 1251"),
        ({"test_fraction": 0.9999}, "leaves no training case"),
        ({"test_size": 0}, "positive integer"),
        ({"test_fraction": 1.5}, "between 0 and 1"),
        ({}, "exactly one"),
        ({"test_size": 10, "test_fraction": 0.1}, "exactly one"),
        ({"test_size": 10, "validation_fraction": 0.5}, "validation_fraction"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(KdbenchError, match=match):
        sp.make_splits(IDS, seeds=[0], **kwargs)


def test_bad_cases() -> None:
    with pytest.raises(KdbenchError, match="no cases"):
        sp.make_splits([], seeds=[0], test_size=1)
    with pytest.raises(KdbenchError, match="BraTS2021_00003, BraTS2021_00007"):
        sp.make_splits(IDS[:10] + [IDS[7], IDS[3]], seeds=[0], test_size=2)


def test_bad_sizes(splits: sp.Splits) -> None:
    with pytest.raises(KdbenchError, match="N=1001 is larger than the training pool of 1000"):
        splits.subset(1001, 0)
    with pytest.raises(KdbenchError, match="N=1 is too small"):
        splits.subset(1, 0)
    with pytest.raises(KdbenchError, match="training seed 5"):
        splits.subset(25, 5)
    with pytest.raises(KdbenchError, match="N=5000"):
        sp.check_sizes(splits, [25, 5000])
    sp.check_sizes(splits, SIZES)


def test_save_load(splits: sp.Splits, tmp_path: Path) -> None:
    path = tmp_path / "dataset" / "splits.json"
    assert split_files.save_splits(splits, path) == path
    assert split_files.load_splits(path) == splits
    mtime = path.stat().st_mtime_ns
    split_files.save_splits(splits, path)  # identical: no-op
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in path.parent.iterdir()] == ["splits.json"]  # no temp file left
    other = sp.make_splits(IDS, seeds=SEEDS, test_size=251, split_seed=8)
    with pytest.raises(KdbenchError, match=r"splits\.json.*--force or delete"):
        split_files.save_splits(other, path)
    assert split_files.load_splits(path) == splits
    split_files.save_splits(other, path, overwrite=True)
    assert split_files.load_splits(path) == other


def test_tampered_file(splits: sp.Splits, tmp_path: Path) -> None:
    path = split_files.save_splits(splits, tmp_path / "splits.json")
    data = json.loads(path.read_text())
    data["permutations"]["0"][:2] = data["permutations"]["0"][1::-1]
    path.write_text(json.dumps(data))
    with pytest.raises(KdbenchError, match=r"splits\.json.*edited by hand or corrupted"):
        split_files.load_splits(path)
    path.write_text("{not json")
    with pytest.raises(KdbenchError, match=r"splits\.json.*kdbench data prepare"):
        split_files.load_splits(path)
    path.write_text(json.dumps({"format": "kdbench-splits"}))
    with pytest.raises(KdbenchError, match="edited by hand or corrupted"):
        split_files.load_splits(path)
    with pytest.raises(KdbenchError, match="no splits file"):
        split_files.load_splits(tmp_path / "missing.json")


def test_no_leak(splits: sp.Splits) -> None:
    split_checks.assert_no_test_leak(splits)
    split_checks.assert_no_test_leak(splits, SIZES)


def test_leak_detected(splits: sp.Splits) -> None:
    leak = splits.test[0]
    perm = list(splits.permutations[1])
    perm[40] = leak
    bad = dataclasses.replace(splits, permutations={**splits.permutations, 1: tuple(perm)})
    with pytest.raises(split_checks.TestLeakError, match=f"seed 1: {leak}"):
        split_checks.assert_no_test_leak(bad)
    # A test case also listed in the pool.
    bad_pool = dataclasses.replace(splits, pool=(*splits.pool, leak))
    with pytest.raises(split_checks.TestLeakError, match=leak):
        split_checks.assert_no_test_leak(bad_pool)
    # A repeated case could be both training and validation.
    perm = list(splits.permutations[0])
    perm[1] = perm[0]
    dup = dataclasses.replace(splits, permutations={0: tuple(perm)})
    with pytest.raises(split_checks.TestLeakError, match="repeated"):
        split_checks.assert_no_test_leak(dup)
    assert issubclass(split_checks.TestLeakError, KdbenchError)
