import pytest

from kdbench.modalities import all_combinations, canonical, channel_indices, label, normalize


def test_fifteen_combinations_in_table_order():
    combos = all_combinations()
    assert len(combos) == 15 == len(set(combos))
    assert combos[:4] == [("t1",), ("t1ce",), ("t2",), ("flair",)]
    assert combos[-1] == ("t1", "t1ce", "t2", "flair")
    assert [len(c) for c in combos] == sorted(len(c) for c in combos)


def test_aliases_map_to_canonical_channel_order():
    assert normalize(["t2f", "T1C", "t1n"]) == ("t1", "t1ce", "flair")
    assert channel_indices(["flair", "t1ce"]) == (1, 3)
    assert label(["flair", "t1ce"]) == "t1ce+flair"
    assert canonical("t2w") == "t2"


@pytest.mark.parametrize(
    ("names", "message"),
    [(["flare"], "unknown modality 'flare'"), ([], "at least one"), (["t1", "t1n"], "twice")],
)
def test_bad_modality_sets(names, message):
    with pytest.raises(ValueError, match=message):
        normalize(names)
